/*
 * rig-init: PID 1 of the rig's Linux guest. It runs the guest's scenario script
 * (/rig-main, busybox sh) as its child and reaps every process that ends.
 *
 * busybox sh as PID 1 itself now and then died of a corrupted heap ("corrupted
 * double-linked list") after its background jobs ran; PID 1 dying panics the
 * kernel and takes the scenario down with it. This init does nothing a shell
 * could get wrong: if the script dies, it says how on the console and the guest
 * stays up for dom0 to see.
 *
 * Part of Conch's real-Xen rig, built by scripts/real-xen/run.sh.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    char *const script[] = {"/bin/sh", "/rig-main", NULL};
    pid_t main_pid = fork();
    if (main_pid == 0) {
        execv(script[0], script);
        perror("rig-init: exec /rig-main");
        _exit(127);
    }
    if (main_pid < 0) perror("rig-init: fork");
    for (;;) {
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) {
            if (errno == ECHILD) pause();
            continue;
        }
        if (pid != main_pid) continue;
        if (WIFSIGNALED(status))
            printf("RIG-GUEST-DIED the scenario script was killed by signal %d\n", WTERMSIG(status));
        else
            printf("RIG-GUEST-DIED the scenario script exited with status %d\n", WEXITSTATUS(status));
        fflush(stdout);
    }
}
