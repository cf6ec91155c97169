// Conch layout conformance probe: prints every offset, size and constant Conch
// mirrors, as "name value" lines, from the Xen headers installed by libxen-dev.
// Compiled and run by LayoutConformanceTests; never vendored, never copied.
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <xen/xen.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/io/console.h>
#include <xen/io/xenbus.h>
#include <xen/io/xs_wire.h>

#define SHOW(name, expr) printf("%s %lld\n", name, (long long)(expr))

int main(void) {
    SHOW("console.in", offsetof(struct xencons_interface, in));
    SHOW("console.in.size", sizeof(((struct xencons_interface *)0)->in));
    SHOW("console.out", offsetof(struct xencons_interface, out));
    SHOW("console.out.size", sizeof(((struct xencons_interface *)0)->out));
    SHOW("console.in_cons", offsetof(struct xencons_interface, in_cons));
    SHOW("console.in_prod", offsetof(struct xencons_interface, in_prod));
    SHOW("console.out_cons", offsetof(struct xencons_interface, out_cons));
    SHOW("console.out_prod", offsetof(struct xencons_interface, out_prod));
    SHOW("console.index.size", sizeof(XENCONS_RING_IDX));
    SHOW("console.sizeof", sizeof(struct xencons_interface));

    SHOW("xs.req", offsetof(struct xenstore_domain_interface, req));
    SHOW("xs.rsp", offsetof(struct xenstore_domain_interface, rsp));
    SHOW("xs.req_cons", offsetof(struct xenstore_domain_interface, req_cons));
    SHOW("xs.req_prod", offsetof(struct xenstore_domain_interface, req_prod));
    SHOW("xs.rsp_cons", offsetof(struct xenstore_domain_interface, rsp_cons));
    SHOW("xs.rsp_prod", offsetof(struct xenstore_domain_interface, rsp_prod));
    SHOW("xs.server_features", offsetof(struct xenstore_domain_interface, server_features));
    SHOW("xs.connection", offsetof(struct xenstore_domain_interface, connection));
    SHOW("xs.error", offsetof(struct xenstore_domain_interface, error));
    SHOW("xs.sizeof", sizeof(struct xenstore_domain_interface));
    SHOW("xs.ring_size", XENSTORE_RING_SIZE);
    SHOW("xs.payload_max", XENSTORE_PAYLOAD_MAX);
    SHOW("xs.abs_path_max", XENSTORE_ABS_PATH_MAX);
    SHOW("xs.rel_path_max", XENSTORE_REL_PATH_MAX);
    SHOW("xs.feature.reconnection", XENSTORE_SERVER_FEATURE_RECONNECTION);
    SHOW("xs.feature.error", XENSTORE_SERVER_FEATURE_ERROR);
    SHOW("xs.connected", XENSTORE_CONNECTED);
    SHOW("xs.reconnect", XENSTORE_RECONNECT);
    SHOW("xs.error.none", XENSTORE_ERROR_NONE);
    SHOW("xs.error.comm", XENSTORE_ERROR_COMM);
    SHOW("xs.error.ringidx", XENSTORE_ERROR_RINGIDX);
    SHOW("xs.error.proto", XENSTORE_ERROR_PROTO);

    SHOW("sockmsg.type", offsetof(struct xsd_sockmsg, type));
    SHOW("sockmsg.req_id", offsetof(struct xsd_sockmsg, req_id));
    SHOW("sockmsg.tx_id", offsetof(struct xsd_sockmsg, tx_id));
    SHOW("sockmsg.len", offsetof(struct xsd_sockmsg, len));
    SHOW("sockmsg.sizeof", sizeof(struct xsd_sockmsg));

    SHOW("XS_CONTROL", XS_CONTROL);
    SHOW("XS_DIRECTORY", XS_DIRECTORY);
    SHOW("XS_READ", XS_READ);
    SHOW("XS_GET_PERMS", XS_GET_PERMS);
    SHOW("XS_WATCH", XS_WATCH);
    SHOW("XS_UNWATCH", XS_UNWATCH);
    SHOW("XS_TRANSACTION_START", XS_TRANSACTION_START);
    SHOW("XS_TRANSACTION_END", XS_TRANSACTION_END);
    SHOW("XS_INTRODUCE", XS_INTRODUCE);
    SHOW("XS_RELEASE", XS_RELEASE);
    SHOW("XS_GET_DOMAIN_PATH", XS_GET_DOMAIN_PATH);
    SHOW("XS_WRITE", XS_WRITE);
    SHOW("XS_MKDIR", XS_MKDIR);
    SHOW("XS_RM", XS_RM);
    SHOW("XS_SET_PERMS", XS_SET_PERMS);
    SHOW("XS_WATCH_EVENT", XS_WATCH_EVENT);
    SHOW("XS_ERROR", XS_ERROR);
    SHOW("XS_IS_DOMAIN_INTRODUCED", XS_IS_DOMAIN_INTRODUCED);
    SHOW("XS_RESUME", XS_RESUME);
    SHOW("XS_SET_TARGET", XS_SET_TARGET);
    SHOW("XS_RESET_WATCHES", XS_RESET_WATCHES);
    SHOW("XS_DIRECTORY_PART", XS_DIRECTORY_PART);
    SHOW("XS_TYPE_COUNT", XS_TYPE_COUNT);
    SHOW("XS_INVALID", XS_INVALID);
    for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++) {
        printf("error.%zu %s %d\n", i, xsd_errors[i].errstring, xsd_errors[i].errnum);
    }

    SHOW("grant.flags", offsetof(struct grant_entry_v1, flags));
    SHOW("grant.domid", offsetof(struct grant_entry_v1, domid));
    SHOW("grant.frame", offsetof(struct grant_entry_v1, frame));
    SHOW("grant.sizeof", sizeof(struct grant_entry_v1));
    SHOW("GTF_invalid", GTF_invalid);
    SHOW("GTF_permit_access", GTF_permit_access);
    SHOW("GTF_accept_transfer", GTF_accept_transfer);
    SHOW("GTF_transitive", GTF_transitive);
    SHOW("GTF_type_mask", GTF_type_mask);
    SHOW("GTF_readonly", GTF_readonly);
    SHOW("GTF_reading", GTF_reading);
    SHOW("GTF_writing", GTF_writing);
    SHOW("GNTTAB_NR_RESERVED_ENTRIES", GNTTAB_NR_RESERVED_ENTRIES);
    SHOW("GNTTAB_RESERVED_CONSOLE", GNTTAB_RESERVED_CONSOLE);
    SHOW("GNTTAB_RESERVED_XENSTORE", GNTTAB_RESERVED_XENSTORE);
    SHOW("grant_ref.size", sizeof(grant_ref_t));
    SHOW("domid.size", sizeof(domid_t));
    SHOW("evtchn_port.size", sizeof(evtchn_port_t));

    SHOW("DOMID_FIRST_RESERVED", DOMID_FIRST_RESERVED);
    SHOW("DOMID_SELF", DOMID_SELF);
    SHOW("DOMID_INVALID", DOMID_INVALID);

    SHOW("XenbusStateUnknown", XenbusStateUnknown);
    SHOW("XenbusStateInitialising", XenbusStateInitialising);
    SHOW("XenbusStateInitWait", XenbusStateInitWait);
    SHOW("XenbusStateInitialised", XenbusStateInitialised);
    SHOW("XenbusStateConnected", XenbusStateConnected);
    SHOW("XenbusStateClosing", XenbusStateClosing);
    SHOW("XenbusStateClosed", XenbusStateClosed);
    SHOW("XenbusStateReconfiguring", XenbusStateReconfiguring);
    SHOW("XenbusStateReconfigured", XenbusStateReconfigured);
    return 0;
}
