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

/// Receives up to `len` bytes and up to `maxfds` descriptors (MSG_CMSG_CLOEXEC).
/// `*nfds` is set to the number received. Returns bytes received (0 on EOF) or -1
/// and errno; EMSGSIZE if the control data was truncated (descriptors lost).
ssize_t cconch_recv_fds(int sock, int *fds, size_t maxfds, size_t *nfds, void *buf, size_t len);

/// Reads the peer's credentials of a connected Unix socket (SO_PEERCRED).
int cconch_peer_credentials(int sock, int32_t *pid, uint32_t *uid, uint32_t *gid);

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

#endif
