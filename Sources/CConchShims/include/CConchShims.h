//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

// Only what Swift's Glibc module does not expose: memfd_create, eventfd, epoll
// and the SCM_RIGHTS cmsg macros (all hidden behind _GNU_SOURCE or missing
// headers). Everything else is called from Swift directly.

#ifndef CCONCH_SHIMS_H
#define CCONCH_SHIMS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

/// memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING); -1 and errno on failure.
int cconch_memfd_create(const char *name);

/// Seals a memfd against shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW).
int cconch_memfd_seal_size(int fd);

/// Sends `len` bytes of `buf` (at least one byte) plus `nfds` descriptors in one
/// SCM_RIGHTS message. Returns bytes sent or -1 and errno.
ssize_t cconch_send_fds(int sock, const int *fds, size_t nfds, const void *buf, size_t len);

/// As cconch_send_fds, with extra sendmsg flags (MSG_DONTWAIT for a non-blocking send).
ssize_t cconch_send_fds_flags(int sock, const int *fds, size_t nfds, const void *buf, size_t len, int flags);

/// Receives up to `len` bytes and up to `maxfds` descriptors (MSG_CMSG_CLOEXEC).
/// `*nfds` is set to the number received. Returns bytes received (0 on EOF) or -1
/// and errno; EMSGSIZE if the control data was truncated (descriptors lost).
ssize_t cconch_recv_fds(int sock, int *fds, size_t maxfds, size_t *nfds, void *buf, size_t len);

/// Reads the peer's credentials of a connected Unix socket (SO_PEERCRED).
int cconch_peer_credentials(int sock, int32_t *pid, uint32_t *uid, uint32_t *gid);

/// The peer's pidfd of a connected Unix socket (SO_PEERPIDFD, Linux 6.5); -1 and
/// errno (ENOPROTOOPT on older kernels) on failure.
int cconch_peer_pidfd(int sock);

/// Whether the process behind `pidfd` is still alive (pidfd_send_signal with signal 0).
int cconch_pidfd_alive(int pidfd);

/// pidfd_open(pid, 0): a descriptor that becomes readable when the process exits.
int cconch_pidfd_open(int pid);

/// Installs process-wide handlers for SIGTERM, SIGINT and SIGHUP that write the
/// signal number into a self-pipe, and returns the pipe's (non-blocking) read end
/// to poll; -1 and errno on failure. Works whatever thread the signal lands on.
int cconch_termination_signalfd(void);

/// Reads one signal number from that pipe; -1 when none is pending.
int cconch_read_signal(int fd);

/// Adds "close every descriptor from `lowest` up" to a spawn's file actions
/// (glibc's posix_spawn_file_actions_addclosefrom_np, which Swift's Glibc module
/// does not export). Returns 0 or an errno value.
int cconch_spawn_add_closefrom(void *actions, int lowest);

/// Adds "change to directory `path`" to a spawn's file actions (glibc's
/// posix_spawn_file_actions_addchdir_np, likewise not exported). 0 or an errno value.
int cconch_spawn_add_chdir(void *actions, const char *path);

/// A simulated guest's process and its wall (guest_sandbox.c, docs/SECURITY.md).
struct cconch_sandbox {
    /// argv and envp of the guest program, NULL-terminated.
    const char *const *argv;
    const char *const *envp;
    /// The program, opened by the caller; executed with execveat, so its path need
    /// not be reachable by the guest's uid.
    int exec_fd;
    /// Descriptors placed in the guest at `fd_targets[i]` from `fd_sources[i]` (at most 16);
    /// nothing else crosses over.
    const int *fd_targets;
    const int *fd_sources;
    int fd_count;
    /// The guest's uid and gid on the host, and the only ones mapped into its user namespace.
    uint32_t uid;
    uint32_t gid;
    /// The caller is root: also drop supplementary groups (needs setgroups allowed).
    int drop_supplementary_groups;
    /// NULL-terminated directories covered by an empty, inaccessible, read-only tmpfs.
    const char *const *hidden;
    /// NULL-terminated directories that stay writable; the rest of the host is read-only.
    const char *const *writable;
    /// A directory replaced by a private, writable tmpfs owned by the guest (or NULL).
    const char *private_directory;
    /// The guest's host name in its UTS namespace (or NULL).
    const char *hostname;
};

/// Starts a guest program in new user, mount, pid, network, IPC and UTS namespaces
/// (see guest_sandbox.c). Returns its pid — pid 1 of the guest's namespace, a small
/// init that forwards signals and reaps — and in `*status_fd` a pipe on which that
/// init writes the program's raw wait status (4 bytes) before it exits. On failure
/// returns -1 and a message in `error`.
pid_t cconch_spawn_sandboxed(const struct cconch_sandbox *spec, int *status_fd, char *error, size_t error_size);

/// The CPUs the calling thread may run on, lowest first, into `cpus` (at most
/// `max`): their count, or -1 and errno.
int cconch_thread_cpus(int *cpus, int max);

/// Restricts the calling thread (and processes it spawns from now on) to the
/// `count` CPUs in `cpus`: 0, or -1 and errno.
int cconch_pin_thread(const int *cpus, int count);

#endif
