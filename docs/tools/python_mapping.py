#!/usr/bin/env python3
"""Generate docs/python-mapping.md: every public name of CPython's
multiprocessing package, and its multiproc equivalent or why there is none.

The names come from the installed CPython (each module's __all__, each
class's public attributes), so a name this table forgets makes the script
fail; so does a mp_* name that include/multiproc.h does not declare.

    python3 docs/tools/python_mapping.py            # rewrite the file
    python3 docs/tools/python_mapping.py --check    # fail if it is stale
"""
import importlib
import multiprocessing
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "docs", "python-mapping.md")
HEADER = os.path.join(ROOT, "include", "multiproc.h")

# --- what to enumerate ------------------------------------------------------

MODULES = [
    "multiprocessing", "multiprocessing.process", "multiprocessing.connection",
    "multiprocessing.queues", "multiprocessing.synchronize",
    "multiprocessing.sharedctypes", "multiprocessing.shared_memory",
    "multiprocessing.managers", "multiprocessing.pool", "multiprocessing.dummy",
    "multiprocessing.dummy.connection", "multiprocessing.util",
    "multiprocessing.reduction", "multiprocessing.heap", "multiprocessing.spawn",
    "multiprocessing.forkserver", "multiprocessing.resource_tracker",
    "multiprocessing.resource_sharer", "multiprocessing.popen_fork",
    "multiprocessing.popen_spawn_posix", "multiprocessing.popen_forkserver",
]
DUNDERS = ("__enter__", "__exit__", "__iter__", "__next__", "__len__",
           "__getitem__", "__setitem__")


def class_names(obj):
    names = {n for n in dir(obj) if not n.startswith("_")}
    names |= {n for n in DUNDERS if hasattr(obj, n)}
    return sorted(names)


def exposed(cls):
    return sorted(getattr(cls, "_exposed_", ()) or ())


def enumerate_python():
    """[(section, [qualified names])] in the order of the document."""
    mp = multiprocessing
    import multiprocessing.connection as conn
    import multiprocessing.managers as mgr
    import multiprocessing.pool as pool
    import multiprocessing.shared_memory as shm
    import multiprocessing.context as ctx

    out = []
    for mod in MODULES:
        m = importlib.import_module(mod)
        names = sorted(n for n in m.__all__ if n != "_main")
        out.append((mod, [f"{mod}.{n}" for n in names]))

    p = mp.Process()
    objects = [
        ("Process", p),
        ("context (get_context())", ctx.BaseContext),
        ("Connection", conn.Connection),
        ("Listener", conn.Listener),
        ("Queue", mp.queues.Queue),
        ("JoinableQueue", mp.queues.JoinableQueue),
        ("SimpleQueue", mp.queues.SimpleQueue),
        ("Lock", mp.Lock()),
        ("RLock", mp.RLock()),
        ("Semaphore", mp.Semaphore()),
        ("BoundedSemaphore", mp.BoundedSemaphore()),
        ("Condition", mp.Condition()),
        ("Event", mp.Event()),
        ("Barrier", mp.Barrier(1)),
        ("Value", mp.Value("i")),
        ("Array", mp.Array("i", 1)),
        ("SharedMemory", shm.SharedMemory),
        ("ShareableList", shm.ShareableList),
        ("BaseManager", mgr.BaseManager()),
        ("SyncManager", mgr.SyncManager),
        ("SharedMemoryManager", mgr.SharedMemoryManager),
        ("BaseProxy", mgr.BaseProxy),
        ("Token", mgr.Token),
        ("Pool", pool.Pool),
        ("AsyncResult", pool.AsyncResult),
        ("IMapIterator", pool.IMapIterator),
        ("ThreadPool", pool.ThreadPool),
    ]
    for title, obj in objects:
        names = class_names(obj)
        if title == "BaseProxy":
            names += ["_callmethod", "_getvalue"]
        if title == "BaseManager":
            names += ["shutdown"]  # set by start()
        out.append((title, [f"{title.split()[0]}.{n}" for n in names]))
    for title, cls in (("DictProxy", mgr.DictProxy), ("ListProxy", mgr.ListProxy),
                       ("ValueProxy", mgr.ValueProxy), ("NamespaceProxy", mgr.NamespaceProxy),
                       ("ArrayProxy", mgr.ArrayProxy), ("BarrierProxy", mgr.BarrierProxy),
                       ("ConditionProxy", mgr.ConditionProxy), ("AcquirerProxy", mgr.AcquirerProxy),
                       ("EventProxy", mgr.EventProxy), ("PoolProxy", mgr.PoolProxy),
                       ("IteratorProxy", mgr.IteratorProxy)):
        out.append((title, [f"{title}.{n}" for n in exposed(cls)]))
    return out

# --- the mapping --------------------------------------------------------------

NOCTX = "no context object: a C program has no `with` block; call the release/close function itself"
MP = "multiprocessing."
MAP = {
    # top-level functions and classes
    MP + "Process": "`mp_process_new()` (target, args), `mp_process_set_name()`, `mp_process_set_daemon()`; see the Process rows",
    MP + "Pipe": "`mp_pipe(&a, &b, duplex)`",
    MP + "Queue": "`mp_queue_new(&q, maxsize)`",
    MP + "JoinableQueue": "`mp_joinable_queue_new()`",
    MP + "SimpleQueue": "`mp_simple_queue_new()`",
    MP + "Lock": "`mp_lock_new()`; unlike Python's it has an owner and reports `MP_EOWNERDEAD` when its owner died holding it",
    MP + "RLock": "`mp_rlock_new()`",
    MP + "Semaphore": "`mp_semaphore_new(&s, value, false)`",
    MP + "BoundedSemaphore": "`mp_semaphore_new(&s, value, true)`",
    MP + "Condition": "`mp_condition_new(&c, lock)` (NULL: a new RLock)",
    MP + "Event": "`mp_event_new()`",
    MP + "Barrier": "`mp_barrier_new(&b, parties, action, timeout)`",
    MP + "Value": "`mp_value_new(&v, type, true)`; the typecode is an `mp_type` (`MP_INT32`, `MP_DOUBLE`, ...)",
    MP + "Array": "`mp_array_new(&a, type, n, init, true)`",
    MP + "RawValue": "`mp_value_new(&v, type, false)`",
    MP + "RawArray": "`mp_array_new(&a, type, n, init, false)`",
    MP + "Manager": "`mp_manager_start(&m, NULL, NULL, NULL, 0)`",
    MP + "Pool": "`mp_pool_new(&p, &opts)`",
    MP + "active_children": "`mp_active_children()`",
    MP + "cpu_count": "`mp_cpu_count()` (the CPUs this process may run on, which is what a pool wants)",
    MP + "current_process": "`mp_current_process()`",
    MP + "parent_process": "`mp_parent_process()`",
    MP + "get_all_start_methods": "`mp_get_all_start_methods()`",
    MP + "get_context": "`mp_get_context(method)`",
    MP + "get_start_method": "`mp_get_start_method(allow_none)`",
    MP + "set_start_method": "`mp_set_start_method(method, force)`",
    MP + "set_executable": "none: spawn re-executes the program itself (/proc/self/exe); there is no interpreter to choose",
    MP + "set_forkserver_preload": "none: there are no modules to import; the fork server is a copy of the program with its libraries already loaded",
    MP + "freeze_support": "none needed: a spawned child never runs `main()`; `mp_main_hook()` is the fallback for programs whose constructors cannot be relied on",
    MP + "allow_connection_pickling": "none needed: connections always travel (`mp_args_add_conn()`, `mp_conn_send()`)",
    MP + "get_logger": "none: there is no logging module; `mp_log_to_stderr()` turns the library's own log on",
    MP + "log_to_stderr": "`mp_log_to_stderr(level)` (or `MULTIPROC_LOG=level` in the environment)",
    MP + "reducer": "none: there is no pickling; `mp_args` is the one wire format (see reduction below)",
    MP + "ProcessError": "the negative `MP_E*` codes every call returns (`mp_strerror()`, `mp_errname()`)",
    MP + "AuthenticationError": "`MP_EAUTH`",
    MP + "BufferTooShort": "`MP_EMSGSIZE` from `mp_conn_recv_bytes_into()` (the message's length in `*len`)",
    MP + "TimeoutError": "`MP_ETIMEDOUT`",
    # process
    MP + "process.BaseProcess": "`mp_process` (there is no subclassing in C: the target and its `mp_args` play `run()` and the instance's fields; see examples/subclass.c)",
    MP + "process.active_children": "`mp_active_children()`",
    MP + "process.current_process": "`mp_current_process()`",
    MP + "process.parent_process": "`mp_parent_process()`",
    # connection
    MP + "connection.Client": "`mp_client(&c, address, authkey, keylen)`",
    MP + "connection.Listener": "`mp_listener_new(&l, address, authkey, keylen, backlog)`",
    MP + "connection.Pipe": "`mp_pipe()`",
    MP + "connection.wait": "`mp_wait(items, n, timeout)` over connections, processes and descriptors",
    # queues
    MP + "queues.Queue": "`mp_queue_new()`",
    MP + "queues.JoinableQueue": "`mp_joinable_queue_new()`",
    MP + "queues.SimpleQueue": "`mp_simple_queue_new()`",
    # synchronize
    MP + "synchronize.Lock": "`mp_lock_new()`",
    MP + "synchronize.RLock": "`mp_rlock_new()`",
    MP + "synchronize.Semaphore": "`mp_semaphore_new(&s, value, false)`",
    MP + "synchronize.BoundedSemaphore": "`mp_semaphore_new(&s, value, true)`",
    MP + "synchronize.Condition": "`mp_condition_new()`",
    MP + "synchronize.Event": "`mp_event_new()`",
    # sharedctypes
    MP + "sharedctypes.Value": "`mp_value_new(&v, type, true)`",
    MP + "sharedctypes.Array": "`mp_array_new(&a, type, n, init, true)`",
    MP + "sharedctypes.RawValue": "`mp_value_new(&v, type, false)`",
    MP + "sharedctypes.RawArray": "`mp_array_new(&a, type, n, init, false)`",
    MP + "sharedctypes.copy": "no call of its own: `mp_array_new(&b, mp_array_type(a), mp_array_len(a), mp_array_data(a), false)` makes the same copy",
    MP + "sharedctypes.synchronized": "none: the lock is chosen at creation (`lock` argument of `mp_value_new()` / `mp_array_new()`); an existing object cannot be wrapped afterwards",
    # shared_memory
    MP + "shared_memory.SharedMemory": "`mp_shm_new(&s, name, size, MP_SHM_CREATE)` to create, flags 0 to attach; passed to a child by name with `mp_args_add_shm()` (as Python pickles it)",
    MP + "shared_memory.ShareableList": "none: it stores Python objects of mixed types; in C, lay out a struct or an array in `mp_shm_buf()` (or use `mp_array_new()`)",
    # managers
    MP + "managers.BaseManager": "`mp_manager_start()` / `mp_manager_connect()` / `mp_manager_serve()`, with `mp_manager_register()` for your own types",
    MP + "managers.SyncManager": "`mp_manager` with its typed objects: `mp_manager_dict()`, `mp_manager_list()`, `mp_manager_queue()`, `mp_manager_joinable_queue()`, `mp_manager_lock()`, `mp_manager_rlock()`, `mp_manager_semaphore()`, `mp_manager_bounded_semaphore()`, `mp_manager_condition()`, `mp_manager_event()`, `mp_manager_barrier()`, `mp_manager_value()`, `mp_manager_array()`, `mp_manager_namespace()`",
    MP + "managers.SharedMemoryManager": "none: every segment made with `mp_shm_new()` is already tracked and removed when the program ends (unless `MP_SHM_NOTRACK`)",
    MP + "managers.BaseProxy": "the typed handles a manager returns (`mp_dict`, `mp_list`, and proxy `mp_queue`, `mp_lock`, ...); `mp_manager_call()` for registered types; passed to a child with `mp_args_add_dict()`, `mp_args_add_list()`, `mp_args_add_queue()`, ... (and a manager itself with `mp_args_add_manager()`); usable in a forked child, which connects afresh",
    MP + "managers.Token": "none between C programs: objects are found by name; a Python server's object is attached by its `Token.id` with `mp_pymgr_attach(m, typeid, id, &p, &err)`",
    # pool
    MP + "pool.Pool": "`mp_pool_new()`",
    MP + "pool.ThreadPool": "none: multiproc is about processes; in C use threads directly (a pthread worker pool)",
    # util
    MP + "util.Finalize": "none: use `atexit()` or free the object explicitly; the library finalizes its own objects",
    MP + "util.ForkAwareLocal": "none: reset your own `_Thread_local` data in a `pthread_atfork()` child handler",
    MP + "util.ForkAwareThreadLock": "none: use a pthread mutex and `pthread_atfork()`",
    MP + "util.SUBDEBUG": "`MP_LOG_DEBUG` (the library has five levels, `MP_LOG_OFF`..`MP_LOG_DEBUG`)",
    MP + "util.SUBWARNING": "`MP_LOG_WARNING`",
    MP + "util.close_all_fds_except": "none needed: every descriptor the library makes is close-on-exec and spawn passes an explicit list",
    MP + "util.debug": "none: the library logs through `mp_log_to_stderr()`; there is no call to log your own messages",
    MP + "util.info": "none (as `util.debug`)",
    MP + "util.sub_debug": "none (as `util.debug`)",
    MP + "util.sub_warning": "none (as `util.debug`)",
    MP + "util.get_logger": "none (as `multiprocessing.get_logger`)",
    MP + "util.log_to_stderr": "`mp_log_to_stderr()`",
    MP + "util.get_temp_dir": "none: the library keeps its sockets in a private directory of its own (`mp_listener_new()` with a NULL address)",
    MP + "util.is_exiting": "none",
    MP + "util.register_after_fork": "none: use `pthread_atfork()`; the library resets its own state in a forked child",
    # reduction
    MP + "reduction.ForkingPickler": "none for library objects: `mp_args` carries integers, doubles, strings, bytes, descriptors and library objects; Python data (None, bool, int, float, str, bytes, containers) is pickled by `mp_py_dumps()` and read by `mp_py_loads()`, which never runs code",
    MP + "reduction.dump": "`mp_py_dumps(v, &buf)` for Python data (protocol 4); `mp_conn_send()` writes an `mp_args`",
    MP + "reduction.register": "none: the set of types is fixed; send bytes for your own structures",
    MP + "reduction.DupFd": "`mp_args_add_fd()` (duplicates the descriptor for the receiver)",
    MP + "reduction.send_handle": "`mp_args_add_fd()` then `mp_conn_send()` on a duplex (unix socket) connection",
    MP + "reduction.recv_handle": "`mp_conn_recv()` then `mp_args_fd()`",
    MP + "reduction.sendfds": "`mp_args_add_fd()` for each, then `mp_conn_send()`",
    MP + "reduction.recvfds": "`mp_conn_recv()` then `mp_args_fd()` for each",
    # internals
    MP + "heap.BufferWrapper": "internal: the library's own shared-memory arena (memfd segments) holds every shared object",
    MP + "spawn.freeze_support": "none needed (as `multiprocessing.freeze_support`)",
    MP + "spawn.get_command_line": "internal: spawn runs /proc/self/exe with its own arguments",
    MP + "spawn.get_executable": "none (as `set_executable`)",
    MP + "spawn.set_executable": "none (as `multiprocessing.set_executable`)",
    MP + "spawn.get_preparation_data": "internal: the spawned child is told which function to run and finds it again in the program",
    MP + "spawn.import_main_path": "none: there is no main module to import",
    MP + "forkserver.connect_to_new_process": "internal (the fork server of the `forkserver` start method)",
    MP + "forkserver.ensure_running": "internal: started on first use",
    MP + "forkserver.get_inherited_fds": "internal",
    MP + "forkserver.set_forkserver_preload": "none (as `multiprocessing.set_forkserver_preload`)",
    MP + "resource_tracker.ensure_running": "internal: the library's own resource tracker runs when needed",
    MP + "resource_tracker.register": "automatic: `mp_shm_new()` with `MP_SHM_CREATE` tracks the segment",
    MP + "resource_tracker.unregister": "`MP_SHM_NOTRACK` at creation, or `mp_shm_unlink()`",
    MP + "resource_sharer.DupFd": "`mp_args_add_fd()`",
    MP + "resource_sharer.stop": "none: there is no sharer thread",
    MP + "popen_fork.Popen": "internal: `mp_process_start()` under fork",
    MP + "popen_spawn_posix.Popen": "internal: `mp_process_start()` under spawn",
    MP + "popen_forkserver.Popen": "internal: `mp_process_start()` under forkserver",
}
# multiprocessing.dummy and dummy.connection: threads behind the same API.
for n in ("Barrier", "BoundedSemaphore", "Condition", "Event", "JoinableQueue", "Lock",
          "Manager", "Pipe", "Pool", "Process", "Queue", "RLock", "Semaphore",
          "active_children", "current_process", "freeze_support"):
    MAP[MP + "dummy." + n] = "none: `multiprocessing.dummy` runs threads; multiproc has processes only (use pthreads)"
for n in ("Client", "Listener", "Pipe"):
    MAP[MP + "dummy.connection." + n] = "none: in-process queues between threads (use `mp_pipe()` between processes)"

MAP.update({
    # Process
    "Process.start": "`mp_process_start()`",
    "Process.run": "the target function (`mp_target_fn`), called with the `mp_args`; its return value is the exit code",
    "Process.join": "`mp_process_join(p, timeout)` (`MP_FOREVER` for None)",
    "Process.is_alive": "`mp_process_is_alive()`",
    "Process.name": "`mp_process_name()` / `mp_process_set_name()`",
    "Process.daemon": "`mp_process_daemon()` / `mp_process_set_daemon()`",
    "Process.pid": "`mp_process_pid()`",
    "Process.ident": "`mp_process_pid()`",
    "Process.exitcode": "`mp_process_exitcode(p, &code)` (`MP_EAGAIN` while it runs, as Python's None)",
    "Process.authkey": "`mp_process_authkey()` / `mp_process_set_authkey()`",
    "Process.sentinel": "`mp_process_sentinel()` (a pidfd)",
    "Process.terminate": "`mp_process_terminate()`",
    "Process.kill": "`mp_process_kill()`",
    "Process.close": "`mp_process_close()`",
    # Connection
    "Connection.send": "`mp_conn_send_py(c, v)` sends an `mp_py` value as Python's does (Python's `recv` reads it); `mp_conn_send(c, args)` an `mp_args` between C processes",
    "Connection.recv": "`mp_conn_recv_py(c, flags, &v)` reads what Python's `send` wrote (a pickle, never run: `MP_EBADMSG` for one that names code, unless `MP_PY_INERT`); `mp_conn_recv(c, &args)` an `mp_args`",
    "Connection.send_bytes": "`mp_conn_send_bytes()` (same framing as Python: the two talk to each other)",
    "Connection.recv_bytes": "`mp_conn_recv_bytes(c, &buf, maxlength)`",
    "Connection.recv_bytes_into": "`mp_conn_recv_bytes_into()`",
    "Connection.poll": "`mp_conn_poll(c, timeout)`",
    "Connection.fileno": "`mp_conn_fileno()`",
    "Connection.close": "`mp_conn_close()`",
    "Connection.closed": "none: `mp_conn_close()` frees the object, so there is no closed object to ask",
    "Connection.readable": "`mp_conn_readable()`",
    "Connection.writable": "`mp_conn_writable()`",
    "Connection.__enter__": NOCTX,
    "Connection.__exit__": NOCTX,
    # Listener
    "Listener.accept": "`mp_listener_accept(l, &c, timeout)`",
    "Listener.address": "`mp_listener_address()`",
    "Listener.close": "`mp_listener_close()`",
    "Listener.last_accepted": "none: not kept; `getpeername()` on `mp_conn_fileno()` gives the peer's address",
    "Listener.__enter__": NOCTX,
    "Listener.__exit__": NOCTX,
    # queues
    "Queue.put": "`mp_queue_put(q, msg, len, timeout)`: bytes instead of objects",
    "Queue.put_nowait": "`mp_queue_put(q, msg, len, 0)`",
    "Queue.get": "`mp_queue_get(q, &buf, timeout)` or `mp_queue_get_into()`",
    "Queue.get_nowait": "`mp_queue_get(q, &buf, 0)`",
    "Queue.qsize": "`mp_queue_qsize()`",
    "Queue.empty": "`mp_queue_empty()`",
    "Queue.full": "`mp_queue_full()`",
    "Queue.close": "`mp_queue_close()`",
    "Queue.join_thread": "none needed: there is no feeder thread; messages are in shared memory once `mp_queue_put()` returns",
    "Queue.cancel_join_thread": "none needed (as `join_thread`)",
    "SimpleQueue.put": "`mp_queue_put()`",
    "SimpleQueue.get": "`mp_queue_get()`",
    "SimpleQueue.empty": "`mp_queue_empty()`",
    "SimpleQueue.close": "`mp_queue_close()`",
    "JoinableQueue.task_done": "`mp_queue_task_done()`",
    "JoinableQueue.join": "`mp_queue_join(q, timeout)`",
    # synchronization
    "Lock.acquire": "`mp_lock_acquire(l, timeout)` (block=False: timeout 0); `MP_EOWNERDEAD` when the previous owner died holding it",
    "Lock.release": "`mp_lock_release()` (only by the owning thread: `MP_EPERM` otherwise)",
    "RLock.acquire": "`mp_lock_acquire()`",
    "RLock.release": "`mp_lock_release()`",
    "Semaphore.acquire": "`mp_semaphore_acquire(s, timeout)`",
    "Semaphore.release": "`mp_semaphore_release()`",
    "Semaphore.get_value": "`mp_semaphore_value()`",
    "BoundedSemaphore.acquire": "`mp_semaphore_acquire()`",
    "BoundedSemaphore.release": "`mp_semaphore_release()` (`MP_EINVAL` past the initial value)",
    "BoundedSemaphore.get_value": "`mp_semaphore_value()`",
    "Condition.acquire": "`mp_condition_acquire()`",
    "Condition.release": "`mp_condition_release()`",
    "Condition.wait": "`mp_condition_wait(c, timeout)`",
    "Condition.wait_for": "`mp_condition_wait_for(c, pred, arg, timeout)`",
    "Condition.notify": "`mp_condition_notify(c, n)`",
    "Condition.notify_all": "`mp_condition_notify_all()`",
    "Event.set": "`mp_event_set()`",
    "Event.clear": "`mp_event_clear()`",
    "Event.is_set": "`mp_event_is_set()`",
    "Event.wait": "`mp_event_wait(e, timeout)` (0 when set, `MP_ETIMEDOUT` for Python's False)",
    "Barrier.wait": "`mp_barrier_wait(b, timeout)` (returns the arrival index)",
    "Barrier.reset": "`mp_barrier_reset()`",
    "Barrier.abort": "`mp_barrier_abort()`",
    "Barrier.parties": "`mp_barrier_parties()`",
    "Barrier.n_waiting": "`mp_barrier_n_waiting()`",
    "Barrier.broken": "`mp_barrier_broken()`",
    # Value / Array
    "Value.value": "`mp_value_load()` / `mp_value_store()` (under the value's lock, as Python's), or `*(T *)mp_value_ptr(v)` while holding it",
    "Value.get_lock": "`mp_value_lock()`",
    "Value.get_obj": "`mp_value_ptr()`",
    "Value.acquire": "`mp_lock_acquire(mp_value_lock(v), timeout)`",
    "Value.release": "`mp_lock_release(mp_value_lock(v))`",
    "Array.acquire": "`mp_lock_acquire(mp_array_lock(a), timeout)`",
    "Array.release": "`mp_lock_release(mp_array_lock(a))`",
    "Array.get_lock": "`mp_array_lock()`",
    "Array.get_obj": "`mp_array_data()`",
    "Array.__getitem__": "index `mp_array_data()` (a plain C array of the element type), or `mp_array_load()` (under the array's lock; a manager's array too)",
    "Array.__setitem__": "assign through `mp_array_data()`, or `mp_array_store()` (as `mp_array_load()`)",
    "Array.__len__": "`mp_array_len()`",
    # SharedMemory / ShareableList
    "SharedMemory.buf": "`mp_shm_buf()`",
    "SharedMemory.name": "`mp_shm_name()`",
    "SharedMemory.size": "`mp_shm_size()`",
    "SharedMemory.close": "`mp_shm_close()`",
    "SharedMemory.unlink": "`mp_shm_unlink()`",
    "ShareableList.count": "none (see `ShareableList`)",
    "ShareableList.index": "none (see `ShareableList`)",
    "ShareableList.format": "none (see `ShareableList`)",
    "ShareableList.__getitem__": "none (see `ShareableList`)",
    "ShareableList.__setitem__": "none (see `ShareableList`)",
    "ShareableList.__len__": "none (see `ShareableList`)",
    # managers
    "BaseManager.start": "`mp_manager_start(&m, ctx, address, authkey, keylen)`",
    "BaseManager.connect": "`mp_manager_connect(&m, address, authkey, keylen)`; to a Python manager server: `mp_pymgr_connect(&m, address, authkey, keylen)`",
    "BaseManager.get_server": "`mp_manager_serve()` (serves in the calling process: `get_server().serve_forever()`)",
    "BaseManager.address": "`mp_manager_address()`",
    "BaseManager.join": "`mp_manager_shutdown()` joins a started server",
    "BaseManager.shutdown": "`mp_manager_shutdown()`",
    "BaseManager.register": "`mp_manager_register(type_name, fn)`; methods are called with `mp_manager_call()`",
    "BaseManager.__enter__": "`mp_manager_start()`",
    "BaseManager.__exit__": "`mp_manager_free()` (shuts a started server down)",
    "SyncManager.dict": "`mp_manager_dict(m, name, &d)`: a dict of byte strings in insertion order, with every DictProxy method (below), each one atomic request",
    "SyncManager.list": "`mp_manager_list(m, name, &l)`: a list of byte strings, with every ListProxy method (below), slices included, each one atomic request",
    "SyncManager.Queue": "`mp_manager_queue(m, name, maxsize, &q)`",
    "SyncManager.JoinableQueue": "`mp_manager_joinable_queue(m, name, maxsize, &q)`: `mp_queue_task_done()` and `mp_queue_join()` on the proxy; a dead consumer's unfinished tasks are written off and `join` returns `MP_EOWNERDEAD` instead of hanging",
    "SyncManager.Lock": "`mp_manager_lock()` (owned; a dead client's lock is released and the next acquirer gets `MP_EOWNERDEAD`)",
    "SyncManager.RLock": "`mp_manager_rlock()` (owned, re-entrant, the depth counted on the server; a dead client's holds are released and the next acquirer gets `MP_EOWNERDEAD`)",
    "SyncManager.Semaphore": "`mp_manager_semaphore()`",
    "SyncManager.BoundedSemaphore": "`mp_manager_bounded_semaphore(m, name, value, &s)` (a release past `value` is `MP_EINVAL`)",
    "SyncManager.Event": "`mp_manager_event()`",
    "SyncManager.Condition": "`mp_manager_condition(m, name, lock, &c)` over a manager Lock or RLock of the same manager, or NULL for one of its own (an RLock); a dead waiter is never counted as notified",
    "SyncManager.Barrier": "`mp_manager_barrier(m, name, parties, timeout, &b)`, without an action (code cannot run in the server: run it in the waiter that gets index 0); a party that dies while waiting breaks it at once",
    "SyncManager.Value": "`mp_manager_value(m, name, type, &v)`",
    "SyncManager.Array": "`mp_manager_array(m, name, type, n, init, &a)`: elements through `mp_array_load()` / `mp_array_store()` (one request each)",
    "SyncManager.Namespace": "`mp_manager_namespace(m, name, &ns)`: an `mp_dict` of its own kind, the attribute names its keys (named byte values: a dict with string keys is the C form)",
    "SyncManager.Pool": "none: make a pool in the process that needs it (`mp_pool_new()`)",
    "SharedMemoryManager.SharedMemory": "`mp_shm_new()` (tracked without a manager)",
    "SharedMemoryManager.ShareableList": "none (see `ShareableList`)",
    "BaseProxy._callmethod": "`mp_manager_call(m, type_name, name, method, in, &out)`; on a Python server's object: `mp_pyproxy_call(p, method, args, kwargs, &result, &proxy)`",
    "BaseProxy._getvalue": "none: values are read with the typed calls (`mp_dict_get()`, `mp_value_load()`, ...)",
    "Token.address": "none (see `Token`)",
    "Token.id": "none (see `Token`)",
    "Token.typeid": "none (see `Token`)",
    # proxies
    "DictProxy.__getitem__": "`mp_dict_get()` (`MP_ENOENT` for KeyError)",
    "DictProxy.get": "`mp_dict_get_default(d, k, kl, dflt, dl, &buf)`; `mp_dict_get()` without a default (`MP_ENOENT`)",
    "DictProxy.__setitem__": "`mp_dict_set()`",
    "DictProxy.__delitem__": "`mp_dict_del()`",
    "DictProxy.__len__": "`mp_dict_len()`",
    "DictProxy.__contains__": "`mp_dict_contains(d, k, kl, &in)`",
    "DictProxy.keys": "`mp_dict_keys()`",
    "DictProxy.__iter__": "`mp_dict_keys()` (insertion order, as Python's dict)",
    "DictProxy.update": "`mp_dict_update(d, pairs, len)` with pairs framed as `mp_dict_items()` gives them; `mp_dict_batch()` to mix sets with other operations",
    "DictProxy.pop": "`mp_dict_pop(d, k, kl, dflt, dl, has_default, &buf)` (`MP_ENOENT` without a default)",
    "DictProxy.setdefault": "`mp_dict_setdefault(d, k, kl, dflt, dl, &buf)` (one atomic request)",
    "DictProxy.items": "`mp_dict_items()`: key, value, key, value... each with a 4-byte length, in insertion order",
    "DictProxy.values": "`mp_dict_values()`",
    "DictProxy.copy": "`mp_dict_items()` is the local copy Python returns; `mp_dict_copy(d, name)` copies into another dict on the server, atomically",
    "DictProxy.clear": "`mp_dict_clear()`",
    "DictProxy.popitem": "`mp_dict_popitem(d, &key, &value)`: the newest entry (LIFO), `MP_ENOENT` when empty",
    "ListProxy.append": "`mp_list_append()`",
    "ListProxy.__getitem__": "`mp_list_get(l, index, &buf)` (negative index from the end); `mp_list_get_slice(l, start, stop, step, &buf)` for a slice (omitted bounds: `INT64_MIN` / `INT64_MAX`)",
    "ListProxy.__setitem__": "`mp_list_set()`; `mp_list_set_slice(l, start, stop, step, values, len)` for a slice",
    "ListProxy.pop": "`mp_list_pop(l, index, &buf)`",
    "ListProxy.__len__": "`mp_list_len()`",
    "ListProxy.__delitem__": "`mp_list_pop()` with the index, dropping the value; `mp_list_del_slice(l, start, stop, step)` for a slice",
    "ListProxy.__contains__": "`mp_list_contains(l, v, vl, &in)`",
    "ListProxy.count": "`mp_list_count(l, v, vl, &n)`",
    "ListProxy.index": "`mp_list_index(l, v, vl, start, stop, &i)` (whole list: 0, `INT64_MAX`; `MP_EINVAL` for ValueError)",
    "ListProxy.extend": "`mp_list_extend(l, values, len)`: many values, framed as `mp_dict_keys()` gives them, in one request",
    "ListProxy.insert": "`mp_list_insert(l, index, v, vl)` (index clamped as Python's)",
    "ListProxy.remove": "`mp_list_remove(l, v, vl)` (`MP_EINVAL` for ValueError)",
    "ListProxy.reverse": "`mp_list_reverse()`",
    "ListProxy.sort": "`mp_list_sort(l, reverse)`: byte order as Python compares bytes (memcmp, then the shorter first); no key function: sort a local copy for another order",
    "ListProxy.__add__": "`mp_list_get_slice(l, 0, INT64_MAX, 1, &buf)` and append the other items locally (Python's result is a local list too)",
    "ListProxy.__mul__": "`mp_list_get_slice()` of the whole list, repeated locally (Python's result is a local list)",
    "ListProxy.__rmul__": "as `__mul__`",
    "ListProxy.__imul__": "`mp_list_repeat(l, n)` (n <= 0 empties the list)",
    "ListProxy.__reversed__": "`mp_list_get_slice(l, INT64_MAX, INT64_MIN, -1, &buf)`",
    "ValueProxy.get": "`mp_value_load()` on the proxy from `mp_manager_value()`",
    "ValueProxy.set": "`mp_value_store()`",
    "NamespaceProxy.__getattribute__": "`mp_dict_get(ns, name, strlen(name), &v)` (`MP_ENOENT` for AttributeError)",
    "NamespaceProxy.__setattr__": "`mp_dict_set(ns, name, strlen(name), v, vl)`",
    "NamespaceProxy.__delattr__": "`mp_dict_del(ns, name, strlen(name))` (`MP_ENOENT` for AttributeError)",
    "ArrayProxy.__getitem__": "`mp_array_load(a, start, count, out)` (an index: count 1; a slice: its range)",
    "ArrayProxy.__setitem__": "`mp_array_store(a, start, count, in)`",
    "ArrayProxy.__len__": "`mp_array_len()`",
    "BarrierProxy.__getattribute__": "`mp_barrier_parties()`, `mp_barrier_n_waiting()`, `mp_barrier_broken()` on the proxy",
    "BarrierProxy.abort": "`mp_barrier_abort()` on the proxy",
    "BarrierProxy.reset": "`mp_barrier_reset()` on the proxy",
    "BarrierProxy.wait": "`mp_barrier_wait(b, timeout)` on the proxy",
    "ConditionProxy.acquire": "`mp_condition_acquire()` on the proxy",
    "ConditionProxy.release": "`mp_condition_release()` on the proxy",
    "ConditionProxy.wait": "`mp_condition_wait(c, timeout)` on the proxy (`wait_for`: `mp_condition_wait_for()`, the predicate run in the caller)",
    "ConditionProxy.notify": "`mp_condition_notify(c, n)` on the proxy",
    "ConditionProxy.notify_all": "`mp_condition_notify_all()` on the proxy",
    "AcquirerProxy.acquire": "`mp_lock_acquire()` / `mp_semaphore_acquire()` on the proxy",
    "AcquirerProxy.release": "`mp_lock_release()` / `mp_semaphore_release()` on the proxy",
    "EventProxy.set": "`mp_event_set()` on the proxy",
    "EventProxy.clear": "`mp_event_clear()` on the proxy",
    "EventProxy.is_set": "`mp_event_is_set()` on the proxy",
    "EventProxy.wait": "`mp_event_wait()` on the proxy",
    "IteratorProxy.__next__": "none: managers serve no iterators",
    "IteratorProxy.send": "none (as `__next__`)",
    "IteratorProxy.throw": "none (as `__next__`)",
    "IteratorProxy.close": "none (as `__next__`)",
    # Pool
    "Pool.apply": "`mp_pool_apply(p, fn, args, &result)`",
    "Pool.apply_async": "`mp_pool_apply_async(p, fn, args, done, udata, &r)` (`done` is the callback; errors arrive through `mp_async_get()`)",
    "Pool.map": "`mp_pool_map(p, fn, items, n, item_size, results, result_size, chunksize, &err)`",
    "Pool.map_async": "`mp_pool_map_async()`",
    "Pool.imap": "`mp_pool_imap(..., true, &it)` and `mp_imap_next()`",
    "Pool.imap_unordered": "`mp_pool_imap(..., false, &it)`",
    "Pool.starmap": "`mp_pool_map()` over an array of structs (one struct holds the arguments)",
    "Pool.starmap_async": "`mp_pool_map_async()` over an array of structs",
    "Pool.close": "`mp_pool_close()`",
    "Pool.join": "`mp_pool_join(p, timeout)`",
    "Pool.terminate": "`mp_pool_terminate()`",
    "Pool.Process": "none: the pool's context (`mp_pool_opts.ctx`) chooses how workers start",
    "Pool.__enter__": NOCTX,
    "Pool.__exit__": "`mp_pool_free()` (terminates, as leaving Python's `with` does)",
    "AsyncResult.get": "`mp_async_get(r, timeout, &result, &err)`",
    "AsyncResult.wait": "`mp_async_wait(r, timeout)`",
    "AsyncResult.ready": "`mp_async_ready()`",
    "AsyncResult.successful": "`mp_async_successful()`",
    "IMapIterator.next": "`mp_imap_next(it, &result, &index, &err, timeout)` (`MP_EOF` at the end)",
    "IMapIterator.__next__": "`mp_imap_next()`",
    "IMapIterator.__iter__": "a loop over `mp_imap_next()` until `MP_EOF`",
    "PoolProxy.apply": "none (see `SyncManager.Pool`)",
})
for n in ("apply", "apply_async", "close", "imap", "imap_unordered", "join", "map",
          "map_async", "starmap", "starmap_async", "terminate"):
    MAP.setdefault("PoolProxy." + n, "none (see `SyncManager.Pool`)")
for n in ("Process", "apply", "apply_async", "close", "imap", "imap_unordered", "join", "map",
          "map_async", "starmap", "starmap_async", "terminate", "__enter__", "__exit__"):
    MAP["ThreadPool." + n] = "none (see `pool.ThreadPool`)"
for n in ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition"):
    MAP[n + ".__enter__"] = NOCTX
    MAP[n + ".__exit__"] = NOCTX
MAP["Value.__enter__"] = NOCTX
MAP["Value.__exit__"] = NOCTX
MAP["Array.__enter__"] = NOCTX
MAP["Array.__exit__"] = NOCTX
MAP["BaseManager.__enter__"] = MAP["BaseManager.__enter__"]
for n in ("JoinableQueue",):
    for m in ("put", "put_nowait", "get", "get_nowait", "qsize", "empty", "full", "close",
              "join_thread", "cancel_join_thread"):
        MAP[f"{n}.{m}"] = MAP[f"Queue.{m}"]
for m in ("address", "connect", "get_server", "join", "register", "start", "__enter__", "__exit__"):
    MAP["SyncManager." + m] = MAP["BaseManager." + m]
    MAP["SharedMemoryManager." + m] = "as `BaseManager." + m + "`"
# Every call of a context is the module's call; the context is passed where
# a call takes one (mp_process_new, mp_pool_opts.ctx, mp_manager_start).
CONTEXT_NOTE = {
    "get_start_method": "`mp_context_start_method(ctx)`",
    "set_start_method": "`mp_set_start_method()` (the default context's)",
    "get_context": "`mp_get_context()`",
    "Process": "`mp_process_new(&p, ctx, target, args)`",
    "Pool": "`mp_pool_new()` with `opts.ctx = ctx`",
    "Manager": "`mp_manager_start(&m, ctx, ...)`",
}


def context_entry(name):
    if name in CONTEXT_NOTE:
        return CONTEXT_NOTE[name]
    return "as `multiprocessing." + name + "`: the same call, which works under every start method"


def main():
    check = "--check" in sys.argv
    sections = enumerate_python()
    header = open(HEADER, encoding="utf-8").read()
    declared = set(re.findall(r"\b(mp_\w+|MP_\w+)\b", header))
    # the Python values' header, which multiproc.h includes
    declared |= set(re.findall(r"\b(mp_\w+|MP_\w+)\b",
                               open(os.path.join(ROOT, "include/multiproc/py.h")).read()))
    declared |= set(re.findall(r"\b(MP_\w+)\b",
                               open(os.path.join(ROOT, "include/multiproc/errno.h")).read()))
    declared |= {"MP_" + n for n in re.findall(r"XX\((\w+),", open(os.path.join(ROOT, "include/multiproc/errno.h")).read())}
    missing, unknown, total = [], set(), 0
    lines = []
    for title, names in sections:
        lines.append(f"\n## {title}\n")
        lines.append("| Python | multiproc |")
        lines.append("| --- | --- |")
        for q in names:
            short = q
            if title.startswith("context"):
                entry = context_entry(q.split(".", 1)[1])
            else:
                entry = MAP.get(q)
            if entry is None:
                missing.append(q)
                continue
            total += 1
            for ident in re.findall(r"\b((?:mp|MP)_\w+)", entry):
                if ident not in declared:
                    unknown.add(ident)
            lines.append(f"| `{short}` | {entry} |")
    if missing or unknown:
        for q in missing:
            print("no entry for", q, file=sys.stderr)
        for u in sorted(unknown):
            print("not in the header:", u, file=sys.stderr)
        return 1
    intro = INTRO.format(total=total, version=sys.version.split()[0])
    text = intro + "\n".join(lines) + "\n"
    if check:
        if open(OUT, encoding="utf-8").read() != text:
            print("docs/python-mapping.md is stale: run docs/tools/python_mapping.py", file=sys.stderr)
            return 1
        print(f"docs/python-mapping.md is up to date ({total} names)")
        return 0
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT} ({total} names)")
    return 0


INTRO = """# Python's multiprocessing in C: the complete mapping

Every public name of CPython's `multiprocessing` package (Python {version}:
each module's `__all__`, and the public methods and attributes of each class
and proxy), with the multiproc call that does the same job, or a short reason
why there is none.  {total} names in all.

This file is generated by `docs/tools/python_mapping.py`, which reads the
names from the installed CPython, so none is left out; it fails when a name
has no entry or when an entry names a `mp_*` function or `MP_*` constant that
`include/multiproc.h` does not declare.

Reading the table:

- Python objects become bytes or an `mp_args` (a typed argument list):
  queues and pipes carry bytes (`mp_queue_put()`, `mp_conn_send_bytes()`),
  and `mp_conn_send()` carries an `mp_args`.  Python data (None, bool,
  int, float, str, bytes, containers) crosses as an `mp_py` value, pickled
  without ever running code (`mp_conn_send_py()`, `mp_py_loads()`).
- A timeout of `None` is `MP_FOREVER`; `block=False` is a timeout of 0.
- Exceptions are negative return codes (`MP_ETIMEDOUT`, `MP_EEMPTY`, ...).
- `with` blocks have no C form: call the release or free function.
- "internal" means the library does the job itself, with nothing to call.
- The one deliberate difference in behaviour: a Lock has an owner, and the
  next acquirer after an owner died holding it gets `MP_EOWNERDEAD`.

See also the [user guide](guide/README.md).
"""

if __name__ == "__main__":
    sys.exit(main())
