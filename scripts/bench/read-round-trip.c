/*
 * How long one xenstore request takes, against the least any daemon could take.
 *
 *   read-round-trip SOCKET COUNT            COUNT READs of one node from the daemon on SOCKET
 *   read-round-trip --floor COUNT [CPU]     the same traffic against a server that does
 *                                           nothing (forked; pinned to CPU if given)
 *
 * Every request goes out as libxenstore sends it (the 16-byte header, then the body:
 * two writes) and every reply is read as libxenstore reads it (header, then body).
 * The do-nothing server answers each request with epoll_wait, read and one write, the
 * fewest system calls a daemon can use: its time per round trip is the kernel's share
 * (system calls and context switches), which no daemon can go below. Pin both ends to
 * one CPU (taskset -c 0) so that the daemon's own cost is what differs.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { XS_READ = 2, XS_WRITE = 11, XS_ERROR = 16, HEADER = 16 };

static void fail(const char *what) {
    perror(what);
    exit(1);
}

static void read_exactly(int fd, void *buffer, size_t count) {
    for (size_t got = 0; got < count;) {
        ssize_t n = read(fd, (char *)buffer + got, count - got);
        if (n <= 0) fail("read");
        got += (size_t)n;
    }
}

static void write_exactly(int fd, const void *buffer, size_t count) {
    if (write(fd, buffer, count) != (ssize_t)count) fail("write");
}

/* One request and its reply; exits on an ERROR reply. */
static void request(int fd, uint32_t type, const char *payload, uint32_t length) {
    uint32_t header[4] = {type, 1, 0, length}; /* little-endian host assumed (x86, arm64) */
    write_exactly(fd, header, HEADER);
    write_exactly(fd, payload, length);
    uint32_t reply[4];
    char body[4200];
    read_exactly(fd, reply, HEADER);
    if (reply[3] > sizeof body) {
        fprintf(stderr, "reply of %u bytes\n", reply[3]);
        exit(1);
    }
    read_exactly(fd, body, reply[3]);
    if (reply[0] == XS_ERROR) {
        fprintf(stderr, "the daemon answered %.*s\n", (int)reply[3], body);
        exit(1);
    }
}

/* Answers every whole request on fd with a 40-byte reply until the peer closes. */
static void serve_nothing(int fd) {
    int poller = epoll_create1(0);
    struct epoll_event interest = {.events = EPOLLIN, .data.fd = fd};
    if (poller < 0 || epoll_ctl(poller, EPOLL_CTL_ADD, fd, &interest) < 0) fail("epoll");
    char buffer[16384];
    size_t held = 0;
    for (;;) {
        struct epoll_event event;
        if (epoll_wait(poller, &event, 1, -1) < 1) continue;
        ssize_t n = read(fd, buffer + held, sizeof buffer - held);
        if (n <= 0) exit(0);
        held += (size_t)n;
        uint32_t length;
        while (held >= HEADER && (memcpy(&length, buffer + 12, 4), held >= HEADER + length)) {
            char reply[HEADER + 40];
            memcpy(reply, buffer, HEADER);
            uint32_t reply_length = 40;
            memcpy(reply + 12, &reply_length, 4);
            memset(reply + HEADER, 'x', 40);
            write_exactly(fd, reply, sizeof reply);
            memmove(buffer, buffer + HEADER + length, held - HEADER - length);
            held -= HEADER + length;
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: read-round-trip SOCKET COUNT | --floor COUNT [CPU]\n");
        return 2;
    }
    long count = atol(argv[2]);
    int fd;
    int floor = strcmp(argv[1], "--floor") == 0;
    if (floor) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0) fail("socketpair");
        pid_t server = fork();
        if (server < 0) fail("fork");
        if (server == 0) {
            if (argc == 4) {
                cpu_set_t cpus;
                CPU_ZERO(&cpus);
                CPU_SET(atoi(argv[3]), &cpus);
                if (sched_setaffinity(0, sizeof cpus, &cpus) < 0) fail("sched_setaffinity");
            }
            close(pair[0]);
            serve_nothing(pair[1]);
        }
        close(pair[1]);
        fd = pair[0];
    } else {
        struct sockaddr_un address = {.sun_family = AF_UNIX};
        strncpy(address.sun_path, argv[1], sizeof address.sun_path - 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof address) < 0) fail(argv[1]);
        static const char node_and_value[] = "/read-round-trip\0value";
        request(fd, XS_WRITE, node_and_value, sizeof node_and_value - 1);
    }
    static const char path[] = "/read-round-trip"; /* with its NUL */
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < count; i++) request(fd, XS_READ, path, sizeof path);
    clock_gettime(CLOCK_MONOTONIC, &end);
    double nanoseconds = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
    printf("%s: %ld round trips in %.0f ms, %.2f us each\n", floor ? "do-nothing server" : argv[1], count,
           nanoseconds / 1e6, nanoseconds / 1e3 / (double)count);
    close(fd);
    if (floor) wait(NULL);
    return 0;
}
