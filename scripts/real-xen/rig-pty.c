/*
 * rig-pty: drives an interactive program through a pseudo-terminal, as a person
 * at a terminal would (the rig's stand-in for tmux or expect, which dom0 lacks).
 *
 *   rig-pty [-t SECONDS] COMMAND [ARGUMENTS...] < SCRIPT
 *
 * SCRIPT has one step per line:
 *   expect TEXT   wait until TEXT appears in the program's output after the
 *                 previous match (each expect has SECONDS, default 30)
 *   send TEXT     type TEXT; \r \n \t \\ and \xHH are escapes
 *   sleep MS      wait
 * Everything the program writes is copied to standard output. Exit status: 0
 * when the script completes, 1 when an expect times out or the program exits
 * first (the unmatched text is named on standard error), 2 on usage errors.
 *
 * Part of Conch's real-Xen rig, built by scripts/real-xen/run.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char seen[1 << 20];
static size_t seen_len, matched_to;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Reads what the program wrote within `ms`; returns -1 once it is gone. */
static int pump(int master, int ms)
{
    struct pollfd p = { .fd = master, .events = POLLIN };
    int r = poll(&p, 1, ms);
    if (r <= 0)
        return 0;
    char buf[4096];
    ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0)
        return -1;
    fwrite(buf, 1, n, stdout);
    fflush(stdout);
    if (seen_len + n > sizeof seen) {
        /* keep the unmatched tail only */
        size_t keep = seen_len - matched_to;
        memmove(seen, seen + matched_to, keep);
        seen_len = keep;
        matched_to = 0;
        if (seen_len + n > sizeof seen)
            seen_len = 0;
    }
    memcpy(seen + seen_len, buf, n);
    seen_len += n;
    return 1;
}

static size_t unescape(const char *in, char *out)
{
    size_t n = 0;
    for (; *in; in++) {
        if (*in != '\\' || !in[1]) {
            out[n++] = *in;
            continue;
        }
        in++;
        switch (*in) {
        case 'r': out[n++] = '\r'; break;
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'x': {
            char hex[3] = { in[1], in[1] ? in[2] : 0, 0 };
            out[n++] = (char)strtol(hex, NULL, 16);
            in += in[1] ? (in[2] ? 2 : 1) : 0;
            break;
        }
        default: out[n++] = *in;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    int timeout_s = 30, first = 1;
    if (argc > 2 && !strcmp(argv[1], "-t")) {
        timeout_s = atoi(argv[2]);
        first = 3;
    }
    if (first >= argc || timeout_s <= 0) {
        fprintf(stderr, "usage: rig-pty [-t SECONDS] COMMAND [ARGUMENTS...] < SCRIPT\n");
        return 2;
    }
    struct winsize ws = { .ws_row = 24, .ws_col = 80 };
    int master;
    pid_t child = forkpty(&master, NULL, NULL, &ws);
    if (child < 0) {
        perror("rig-pty: forkpty");
        return 2;
    }
    if (child == 0) {
        execvp(argv[first], argv + first);
        perror("rig-pty: exec");
        _exit(127);
    }
    signal(SIGPIPE, SIG_IGN);
    char line[4096], text[4096];
    int status = 0;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "expect ", 7)) {
            const char *want = line + 7;
            long long deadline = now_ms() + timeout_s * 1000LL;
            for (;;) {
                seen[seen_len] = 0;
                char *hit = memmem(seen + matched_to, seen_len - matched_to, want, strlen(want));
                if (hit) {
                    matched_to = (hit - seen) + strlen(want);
                    break;
                }
                int left = (int)(deadline - now_ms());
                if (left <= 0 || pump(master, left < 200 ? left : 200) < 0) {
                    fprintf(stderr, "\nrig-pty: did not see '%s' within %d s\n", want, timeout_s);
                    status = 1;
                    goto out;
                }
            }
        } else if (!strncmp(line, "send ", 5)) {
            size_t n = unescape(line + 5, text);
            if (write(master, text, n) != (ssize_t)n) {
                perror("rig-pty: write");
                status = 1;
                goto out;
            }
        } else if (!strncmp(line, "sleep ", 6)) {
            long long until = now_ms() + atoi(line + 6);
            while (now_ms() < until)
                if (pump(master, (int)(until - now_ms())) < 0)
                    break;
        } else if (line[0] && line[0] != '#') {
            fprintf(stderr, "rig-pty: unknown step '%s'\n", line);
            status = 2;
            goto out;
        }
    }
out:
    /* Let the last output through, then end the program. */
    pump(master, 200);
    kill(child, SIGHUP);
    close(master);
    waitpid(child, NULL, 0);
    return status;
}
