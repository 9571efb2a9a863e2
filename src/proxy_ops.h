/*
 * The operations of the manager protocol: one list, shared by the client
 * side (proxy.c, managers.c) and the server (manager_server.c).
 *
 * The numbers are the wire form (the first int of every request), so they
 * never change; the gaps group them by the kind that exposes them.
 */
#ifndef MP_PROXY_OPS_H
#define MP_PROXY_OPS_H

#include <stdbool.h>

#include "multiproc.h"

enum {
    MP__OP_OPEN = 1, MP__OP_SHUTDOWN,
    MP__OP_DICT_SET = 10, MP__OP_DICT_GET, MP__OP_DICT_DEL, MP__OP_DICT_LEN, MP__OP_DICT_ADD,
    MP__OP_DICT_KEYS, MP__OP_DICT_BATCH,
    MP__OP_LIST_APPEND = 20, MP__OP_LIST_GET, MP__OP_LIST_SET, MP__OP_LIST_POP,
    MP__OP_LIST_LEN,
    MP__OP_Q_PUT = 30, MP__OP_Q_GET, MP__OP_Q_QSIZE, MP__OP_Q_FULL,
    MP__OP_LOCK_ACQ = 40, MP__OP_LOCK_REL, MP__OP_LOCK_LOCKED,
    MP__OP_EV_SET = 50, MP__OP_EV_CLEAR, MP__OP_EV_ISSET, MP__OP_EV_WAIT,
    MP__OP_SEM_ACQ = 60, MP__OP_SEM_REL, MP__OP_SEM_VALUE,
    MP__OP_VAL_LOAD = 70, MP__OP_VAL_STORE,
    MP__OP_CALL = 80,
    MP__OP_COND_WAIT = 100, MP__OP_COND_NOTIFY,
    MP__OP_BAR_WAIT = 110, MP__OP_BAR_RESET, MP__OP_BAR_ABORT, MP__OP_BAR_PARTIES,
    MP__OP_BAR_NWAITING, MP__OP_BAR_BROKEN,
    MP__OP_DICT_ITEMS = 130, MP__OP_DICT_VALUES, MP__OP_DICT_COPY, MP__OP_DICT_CLEAR,
    MP__OP_DICT_POP, MP__OP_DICT_POPITEM, MP__OP_DICT_SETDEFAULT, MP__OP_DICT_UPDATE,
    MP__OP_DICT_CONTAINS,
    MP__OP_LIST_INSERT = 150, MP__OP_LIST_REMOVE, MP__OP_LIST_INDEX, MP__OP_LIST_COUNT,
    MP__OP_LIST_CONTAINS, MP__OP_LIST_EXTEND, MP__OP_LIST_REVERSE, MP__OP_LIST_SORT,
    MP__OP_LIST_GET_SLICE, MP__OP_LIST_SET_SLICE, MP__OP_LIST_DEL_SLICE, MP__OP_LIST_REPEAT,
    MP__OP_ARR_LOAD = 170, MP__OP_ARR_STORE, MP__OP_ARR_INIT,
    MP__OP_JQ_TASK_DONE = 180, MP__OP_JQ_JOIN,
};

/*
 * What a blocking request hands over — a message taken, a lock or a
 * semaphore acquired — is the client's only once it has said it got the
 * reply (an empty frame, sent by the proxy layer's rpc).  A client that
 * died waiting never does: the server takes back what it took for it (a
 * message to the head of its queue, a lock released as it was, a
 * semaphore's unit returned).  Both sides decide with this one test.
 */
static inline bool mp__op_hands_over(int op, int status)
{
    return (op == MP__OP_Q_GET && status == 0) || (op == MP__OP_SEM_ACQ && status == 0) ||
           (op == MP__OP_LOCK_ACQ && (status == 0 || status == MP_EOWNERDEAD)) ||
           /* a condition's wait hands its lock back to the waiter */
           (op == MP__OP_COND_WAIT && (status == 0 || status == MP_EOWNERDEAD));
}

#endif
