// Conch layout conformance probe: prints every offset, size and constant Conch
// mirrors, as "name value" lines, from the Xen headers installed by libxen-dev.
// Compiled and run by LayoutConformanceTests; never vendored, never copied.
// The interface a current guest declares: without it the headers give the
// pre-3.2 hypercall numbers (sched_op_compat 6, event_channel_op_compat 16).
#define __XEN_INTERFACE_VERSION__ 0x00040e00
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <xen/xen.h>
#include <xen/sched.h>
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

    SHOW("start_info.magic", offsetof(start_info_t, magic));
    SHOW("start_info.magic.size", sizeof(((start_info_t *)0)->magic));
    SHOW("start_info.nr_pages", offsetof(start_info_t, nr_pages));
    SHOW("start_info.shared_info", offsetof(start_info_t, shared_info));
    SHOW("start_info.flags", offsetof(start_info_t, flags));
    SHOW("start_info.store_mfn", offsetof(start_info_t, store_mfn));
    SHOW("start_info.store_evtchn", offsetof(start_info_t, store_evtchn));
    SHOW("start_info.console.mfn", offsetof(start_info_t, console.domU.mfn));
    SHOW("start_info.console.evtchn", offsetof(start_info_t, console.domU.evtchn));
    SHOW("start_info.mfn_list", offsetof(start_info_t, mfn_list));
    SHOW("start_info.cmd_line", offsetof(start_info_t, cmd_line));
    SHOW("start_info.cmd_line.size", MAX_GUEST_CMDLINE);
    SHOW("start_info.sizeof", sizeof(start_info_t));
    SHOW("vcpu_info.sizeof", sizeof(struct vcpu_info));
    SHOW("vcpu_info.upcall_pending", offsetof(struct vcpu_info, evtchn_upcall_pending));
    SHOW("vcpu_info.upcall_mask", offsetof(struct vcpu_info, evtchn_upcall_mask));
    SHOW("vcpu_info.time", offsetof(struct vcpu_info, time));
    SHOW("shared_info.evtchn_pending", offsetof(struct shared_info, evtchn_pending));
    SHOW("shared_info.evtchn_mask", offsetof(struct shared_info, evtchn_mask));
    SHOW("time.version", offsetof(struct vcpu_time_info, version));
    SHOW("time.tsc_timestamp", offsetof(struct vcpu_time_info, tsc_timestamp));
    SHOW("time.system_time", offsetof(struct vcpu_time_info, system_time));
    SHOW("time.tsc_to_system_mul", offsetof(struct vcpu_time_info, tsc_to_system_mul));
    SHOW("time.tsc_shift", offsetof(struct vcpu_time_info, tsc_shift));
    SHOW("__HYPERVISOR_update_va_mapping", __HYPERVISOR_update_va_mapping);
    SHOW("__HYPERVISOR_xen_version", __HYPERVISOR_xen_version);
    SHOW("__HYPERVISOR_console_io", __HYPERVISOR_console_io);
    SHOW("__HYPERVISOR_sched_op", __HYPERVISOR_sched_op);
    SHOW("__HYPERVISOR_event_channel_op", __HYPERVISOR_event_channel_op);
    SHOW("CONSOLEIO_write", CONSOLEIO_write);
    SHOW("SCHEDOP_yield", SCHEDOP_yield);
    SHOW("SCHEDOP_shutdown", SCHEDOP_shutdown);
    SHOW("SCHEDOP_poll", SCHEDOP_poll);
    SHOW("SHUTDOWN_poweroff", SHUTDOWN_poweroff);
    SHOW("EVTCHNOP_send", EVTCHNOP_send);
    SHOW("UVMF_INVLPG", UVMF_INVLPG);
    SHOW("sched_poll.ports", offsetof(struct sched_poll, ports));
    SHOW("sched_poll.nr_ports", offsetof(struct sched_poll, nr_ports));
    SHOW("sched_poll.timeout", offsetof(struct sched_poll, timeout));
    SHOW("sched_poll.sizeof", sizeof(struct sched_poll));
    SHOW("EPERM", EPERM);
    SHOW("__HYPERVISOR_grant_table_op", __HYPERVISOR_grant_table_op);
    SHOW("EVTCHNOP_alloc_unbound", EVTCHNOP_alloc_unbound);
    SHOW("alloc_unbound.remote_dom", offsetof(struct evtchn_alloc_unbound, remote_dom));
    SHOW("alloc_unbound.port", offsetof(struct evtchn_alloc_unbound, port));
    SHOW("alloc_unbound.sizeof", sizeof(struct evtchn_alloc_unbound));
    SHOW("GNTTABOP_setup_table", GNTTABOP_setup_table);
    SHOW("setup_table.nr_frames", offsetof(struct gnttab_setup_table, nr_frames));
    SHOW("setup_table.status", offsetof(struct gnttab_setup_table, status));
    SHOW("setup_table.frame_list", offsetof(struct gnttab_setup_table, frame_list));
    SHOW("setup_table.sizeof", sizeof(struct gnttab_setup_table));

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
