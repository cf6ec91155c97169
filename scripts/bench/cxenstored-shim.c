/*
 * An LD_PRELOAD library that lets Debian's cxenstored (Xen 4.17) run on a machine
 * without Xen, as a plain Unix-socket daemon, so that `conch xenstored` can be
 * measured beside it (scripts/bench/cxenstored-without-xen.sh).
 *
 * cxenstored opens the hypervisor (libxenctrl), the grant-table and event-channel
 * devices, binds VIRQ_DOM_EXC, and introduces dom0 from /proc/xen/xsd_port and the
 * page at /proc/xen/xsd_kva. Here each of those succeeds without doing anything:
 * the event channel is an eventfd that never fires, and the two /proc/xen files
 * are memfds (port "1", one zeroed page, so dom0's ring stays empty). Clients on
 * the socket are served exactly as on a Xen host; nothing else is.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

/* Any non-NULL pointer will do as a handle: nothing dereferences it. */
static int handle;
static int event_fd = -1;

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags) { return &handle; }
int xc_interface_close(void *xch) { return 0; }

void *xengnttab_open(void *logger, unsigned flags) { return &handle; }
int xengnttab_close(void *xgt) { return 0; }
int xengnttab_set_max_grants(void *xgt, uint32_t count) { return 0; }

void *xenevtchn_open(void *logger, unsigned flags)
{
    event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return event_fd < 0 ? NULL : &handle;
}
int xenevtchn_close(void *xce) { return 0; }
int xenevtchn_fd(void *xce) { return event_fd; }
int xenevtchn_bind_virq(void *xce, unsigned virq) { return 100; }
int xenevtchn_bind_interdomain(void *xce, uint32_t domid, uint32_t remote_port) { return 101; }
int xenevtchn_notify(void *xce, uint32_t port) { return 0; }
int xenevtchn_pending(void *xce) { errno = EAGAIN; return -1; }
int xenevtchn_unmask(void *xce, uint32_t port) { return 0; }
int xenevtchn_unbind(void *xce, uint32_t port) { return 0; }

/* A memfd standing in for one of the /proc/xen files cxenstored reads, or -2. */
static int stand_in(const char *path)
{
    if (strcmp(path, "/proc/xen/xsd_port") == 0) {
        int fd = memfd_create("xsd_port", MFD_CLOEXEC);
        if (fd >= 0 && (write(fd, "1", 1) != 1 || lseek(fd, 0, SEEK_SET) != 0)) {
            close(fd);
            return -1;
        }
        return fd;
    }
    if (strcmp(path, "/proc/xen/xsd_kva") == 0) {
        int fd = memfd_create("xsd_kva", MFD_CLOEXEC);
        if (fd >= 0 && ftruncate(fd, 4096) != 0) {
            close(fd);
            return -1;
        }
        return fd;
    }
    return -2;
}

static int forward(const char *name, const char *path, int flags, va_list arguments)
{
    int fd = stand_in(path);
    if (fd != -2)
        return fd;
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(arguments, mode_t) : 0;
    int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, name);
    return real(path, flags, mode);
}

int open(const char *path, int flags, ...)
{
    va_list arguments;
    va_start(arguments, flags);
    int fd = forward("open", path, flags, arguments);
    va_end(arguments);
    return fd;
}

int open64(const char *path, int flags, ...)
{
    va_list arguments;
    va_start(arguments, flags);
    int fd = forward("open64", path, flags, arguments);
    va_end(arguments);
    return fd;
}
