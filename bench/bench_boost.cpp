/*
 * bench_boost.cpp: Boost.Interprocess message_queue doing the work of the
 * Queue rows, as the peer column a C programmer would pick instead of
 * multiproc (header-only Boost, C++17).
 *
 *   boost_mq8  (beside mp_bqueue8, py_bqueue8)
 *       8-byte messages from one producer (a forked child) to one consumer
 *       (this process) through a message_queue of at most 64 messages of
 *       8 bytes: the producer blocks while it is full, as a Queue with
 *       maxsize 64 does;
 *   boost_mq8_unbounded_like  (beside mp_queue8)
 *       the same with room for a whole batch (-n messages, 100000 by
 *       default), so the producer never blocks on a full queue over a
 *       sample, as with the unbounded mp_queue;
 *   boost_mq1m  (beside mp_queue1m)
 *       1 MiB messages through a message_queue of at most 8 messages of
 *       1 MiB (-k; Boost allocates every slot up front: 8 MiB of shared
 *       memory).
 *
 * send() copies the message into the queue's shared memory and receive()
 * copies it out into the consumer's buffer: the two copies mp_queue_put and
 * mp_queue_get_into make.  Every message has priority 0, so the queue is
 * FIFO.
 *
 * Same harness as bench_queue.c: the producer opens the queue by name
 * (open_only) and waits on a shared futex go word; a sample is one batch
 * (100000 8-byte or 200 1 MiB messages), from this process bumping the go
 * word to it taking the batch's last message, divided by the batch's
 * messages: "n" is the number of batches (a spread of batch averages).  The
 * first batch warms up and is not counted.  Each message carries its
 * sequence number in its first 8 bytes; the consumer checks the length,
 * FIFO order and that nothing is lost.  Placement "split", as mp_queue8:
 * the consumer on the first CPU this process may use, the producer on the
 * second.
 *
 * The queue's name in /dev/shm is removed before and after each benchmark,
 * and at exit if one fails.
 *
 * Prints one JSON line per benchmark (see bench_stats.h).
 *
 * usage: bench_boost [-b BATCHES] [-n SMALL_PER_BATCH] [-m BIG_PER_BATCH]
 *                    [-k BIG_CAPACITY] [small|big|NAME ...]
 */
#include "bench_stats.h"

#include <boost/interprocess/ipc/message_queue.hpp>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <exception>
#include <linux/futex.h>
#include <new>
#include <sched.h>
#include <string>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace bip = boost::interprocess;

namespace {

constexpr std::size_t BIG = std::size_t{1} << 20;

using word = std::atomic<std::uint32_t>;
static_assert(sizeof(word) == 4 && word::is_always_lock_free,
              "the go word must be a plain 32-bit futex word");

[[noreturn]] void die(const char *what, int err)
{
    std::fprintf(stderr, "bench_boost: %s: %s\n", what, std::strerror(err));
    std::exit(1);
}

void futex_wait(word *w, std::uint32_t val)
{
    syscall(SYS_futex, reinterpret_cast<std::uint32_t *>(w), FUTEX_WAIT, val, nullptr,
            nullptr, 0);
}

void futex_wake(word *w, int n)
{
    syscall(SYS_futex, reinterpret_cast<std::uint32_t *>(w), FUTEX_WAKE, n, nullptr,
            nullptr, 0);
}

/* The first two CPUs this process may use (-1: none). */
int cpus[2] = {-1, -1};

/* Pin the calling process to @cpu; < 0: leave it alone. */
void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0)
        die("sched_setaffinity", errno);
}

/* The queue this process created and has not removed yet ("" if none):
 * removed at exit, so that a failed run leaves nothing in /dev/shm. */
std::string live_name;

void remove_live()
{
    if (!live_name.empty())
        bip::message_queue::remove(live_name.c_str());
}

/* Samples that each timed @per messages, reported as the time of one (the
 * same line as bench_queue's). */
void report_per(const char *name, std::uint64_t *s, std::size_t n, std::size_t per)
{
    double sum = 0, d = static_cast<double>(per) * 1e3;
    std::qsort(s, n, sizeof *s, bench_cmp_u64);
    for (std::size_t i = 0; i < n; i++)
        sum += static_cast<double>(s[i]);
    std::printf("{\"name\": \"%s\", \"n\": %zu, \"per_sample\": %zu, \"median_us\": %.5f, "
                "\"p10_us\": %.5f, \"p90_us\": %.5f, \"mean_us\": %.5f, \"min_us\": %.5f}\n",
                name, n, per, bench_quantile(s, n, 0.5) / d, bench_quantile(s, n, 0.1) / d,
                bench_quantile(s, n, 0.9) / d, sum / static_cast<double>(n) / d,
                static_cast<double>(s[0]) / d);
    std::fflush(stdout);
}

/* The producer child: opens the queue by name, waits for each batch on @go,
 * then sends @per messages of @size bytes tagged with their sequence
 * numbers.  Returns its exit status. */
int producer(const char *qname, word *go, std::size_t per, std::size_t size,
             std::uint32_t batches)
{
    try {
        pin(cpus[1]);
        bip::message_queue mq(bip::open_only, qname);
        std::vector<char> msg(size);
        std::uint64_t seq = 0;
        for (std::uint32_t b = 1; b <= batches; b++) {
            std::uint32_t g;
            while ((g = go->load()) < b)
                futex_wait(go, g);
            for (std::size_t i = 0; i < per; i++) {
                std::memcpy(msg.data(), &seq, 8);
                seq++;
                mq.send(msg.data(), size, 0);
            }
        }
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "bench_boost: producer: %s\n", e.what());
        return 5;
    }
}

void bench(const char *name, std::size_t capacity, std::size_t size, std::size_t per,
           std::size_t batches)
{
    cpu_set_t saved;
    if (sched_getaffinity(0, sizeof saved, &saved) < 0)
        die("sched_getaffinity", errno);
    std::string qname = "mp-bench-boost-" + std::to_string(getpid()) + "-" + name;
    bip::message_queue::remove(qname.c_str());
    live_name = qname;
    bip::message_queue mq(bip::create_only, qname.c_str(), capacity, size);
    void *shm = mmap(nullptr, sizeof(word), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED)
        die("mmap", errno);
    word *go = new (shm) word(0);
    std::size_t total = batches + 1;
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0)
        _exit(producer(qname.c_str(), go, per, size, static_cast<std::uint32_t>(total)));
    pin(cpus[1] >= 0 ? cpus[0] : -1);
    std::vector<char> buf(size, 1); /* faulted in before timing */
    std::vector<std::uint64_t> smp(total);
    std::uint64_t next = 0;
    for (std::size_t b = 0; b < total; b++) {
        std::uint64_t t0 = bench_now_ns();
        go->fetch_add(1);
        futex_wake(go, INT_MAX);
        for (std::size_t i = 0; i < per; i++) {
            bip::message_queue::size_type len;
            unsigned prio;
            mq.receive(buf.data(), size, len, prio);
            std::uint64_t t;
            std::memcpy(&t, buf.data(), 8);
            if (len != size || t != next) {
                std::fprintf(stderr, "bench_boost: %s: message %zu of batch %zu is wrong\n",
                             name, i, b);
                std::exit(1);
            }
            next++;
        }
        smp[b] = bench_now_ns() - t0;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die("waitpid", errno);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        std::fprintf(stderr, "bench_boost: %s: producer failed (status %#x)\n", name, st);
        std::exit(1);
    }
    bip::message_queue::remove(qname.c_str());
    live_name.clear();
    munmap(shm, sizeof(word));
    sched_setaffinity(0, sizeof saved, &saved);
    report_per(name, smp.data() + 1, batches, per);
}

std::size_t count(const char *s)
{
    long v = s ? std::strtol(s, nullptr, 10) : 0;
    if (v <= 0) {
        std::fprintf(stderr, "bench_boost: a positive count is needed\n");
        std::exit(2);
    }
    return static_cast<std::size_t>(v);
}

enum class cap { bounded64, batch, big };

struct entry {
    const char *group, *name;
    bool big;
    cap capacity;
};

const entry all[] = {
    {"small", "boost_mq8", false, cap::bounded64},
    {"small", "boost_mq8_unbounded_like", false, cap::batch},
    {"big", "boost_mq1m", true, cap::big},
};
constexpr std::size_t NALL = sizeof all / sizeof all[0];

} // namespace

int main(int argc, char **argv)
{
    std::size_t batches = 10, nsmall = 100000, nbig = 200, kbig = 8;
    bool pick[NALL] = {}, any = false;
    for (int i = 1; i < argc; i++) {
        bool known = false;
        if (std::strcmp(argv[i], "-b") == 0)
            batches = count(i + 1 < argc ? argv[++i] : nullptr);
        else if (std::strcmp(argv[i], "-n") == 0)
            nsmall = count(i + 1 < argc ? argv[++i] : nullptr);
        else if (std::strcmp(argv[i], "-m") == 0)
            nbig = count(i + 1 < argc ? argv[++i] : nullptr);
        else if (std::strcmp(argv[i], "-k") == 0)
            kbig = count(i + 1 < argc ? argv[++i] : nullptr);
        else {
            for (std::size_t k = 0; k < NALL; k++)
                if (std::strcmp(argv[i], all[k].group) == 0 ||
                    std::strcmp(argv[i], all[k].name) == 0)
                    pick[k] = known = any = true;
            if (!known) {
                std::fprintf(stderr,
                             "usage: %s [-b BATCHES] [-n SMALL_PER_BATCH] [-m BIG_PER_BATCH] "
                             "[-k BIG_CAPACITY] [small|big|NAME ...]\n",
                             argv[0]);
                return 2;
            }
        }
    }
    cpu_set_t set;
    int found = 0;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        die("sched_getaffinity", errno);
    for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
        if (CPU_ISSET(c, &set))
            cpus[found++] = c;
    if (found < 2)
        std::fprintf(stderr, "bench_boost: one CPU only: the two sides cannot run at once\n");
    std::atexit(remove_live);
    try {
        for (std::size_t k = 0; k < NALL; k++) {
            if (any && !pick[k])
                continue;
            std::size_t size = all[k].big ? BIG : 8;
            std::size_t per = all[k].big ? nbig : nsmall;
            std::size_t capacity = all[k].capacity == cap::bounded64 ? 64
                                   : all[k].capacity == cap::batch   ? per
                                                                     : kbig;
            bench(all[k].name, capacity, size, per, batches);
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "bench_boost: %s\n", e.what());
        return 1;
    }
    return 0;
}
