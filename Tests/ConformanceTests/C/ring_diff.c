// Conch differential ring driver: applies a script of ring operations to a page
// using only the flex-ring helpers of the installed xen/io/ring.h
// (DEFINE_XEN_FLEX_RING), then prints every byte read and the final page.
//
// Script (stdin), one operation per line:
//   layout console|xenstore     choose the page layout (first line)
//   start N                     set every index to N
//   write D LEN SEQ             producer of direction D writes up to LEN bytes
//   read D LEN                  consumer of direction D reads up to LEN bytes
// Direction 0 is frontend→backend (console out / xenstore req), 1 the reverse.
// Output: "R <hex>" per read, then "P <hex>" with the whole struct.
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xen/grant_table.h>
#define XEN_WANT_FLEX_CONSOLE_RING
#include <xen/io/console.h>
#include <xen/io/ring.h>
#include <xen/io/xs_wire.h>

DEFINE_XEN_FLEX_RING(xs);

struct direction {
    unsigned char *data;
    RING_IDX size;
    RING_IDX *cons;
    RING_IDX *prod;
};

static unsigned char page[4096] __attribute__((aligned(4096)));

// The same byte generator as the Swift side: depends on the write's sequence
// number, the direction and the position in the write.
static unsigned char payload_byte(unsigned seq, unsigned dir, unsigned i) {
    return (unsigned char)(seq * 31u + i * 7u + dir * 101u);
}

int main(void) {
    char line[256];
    char layout[32] = "";
    struct direction dirs[2];
    size_t struct_size = 0;
    int is_console = 0;
    unsigned char data[8192];

    while (fgets(line, sizeof(line), stdin)) {
        unsigned dir, len, seq;
        unsigned long start;
        if (sscanf(line, "layout %31s", layout) == 1) {
            struct xencons_interface *cons = (struct xencons_interface *)page;
            struct xenstore_domain_interface *xs = (struct xenstore_domain_interface *)page;
            is_console = strcmp(layout, "console") == 0;
            if (is_console) {
                dirs[0] = (struct direction){(unsigned char *)cons->out, sizeof(cons->out), &cons->out_cons, &cons->out_prod};
                dirs[1] = (struct direction){(unsigned char *)cons->in, sizeof(cons->in), &cons->in_cons, &cons->in_prod};
                struct_size = sizeof(*cons);
            } else {
                dirs[0] = (struct direction){(unsigned char *)xs->req, sizeof(xs->req), &xs->req_cons, &xs->req_prod};
                dirs[1] = (struct direction){(unsigned char *)xs->rsp, sizeof(xs->rsp), &xs->rsp_cons, &xs->rsp_prod};
                struct_size = sizeof(*xs);
            }
        } else if (sscanf(line, "start %lu", &start) == 1) {
            for (int d = 0; d < 2; d++) {
                *dirs[d].cons = (RING_IDX)start;
                *dirs[d].prod = (RING_IDX)start;
            }
        } else if (sscanf(line, "write %u %u %u", &dir, &len, &seq) == 3) {
            struct direction *d = &dirs[dir];
            RING_IDX queued = is_console ? xencons_queued(*d->prod, *d->cons, d->size)
                                         : xs_queued(*d->prod, *d->cons, d->size);
            RING_IDX n = len < d->size - queued ? len : d->size - queued;
            for (unsigned i = 0; i < n; i++) data[i] = payload_byte(seq, dir, i);
            RING_IDX masked_prod = xencons_mask(*d->prod, d->size);
            if (is_console)
                xencons_write_packet(d->data, data, n, &masked_prod, xencons_mask(*d->cons, d->size), d->size);
            else
                xs_write_packet(d->data, data, n, &masked_prod, xs_mask(*d->cons, d->size), d->size);
            *d->prod += n;
        } else if (sscanf(line, "read %u %u", &dir, &len) == 2) {
            struct direction *d = &dirs[dir];
            RING_IDX queued = is_console ? xencons_queued(*d->prod, *d->cons, d->size)
                                         : xs_queued(*d->prod, *d->cons, d->size);
            RING_IDX n = len < queued ? len : queued;
            RING_IDX masked_cons = xencons_mask(*d->cons, d->size);
            if (is_console)
                xencons_read_packet(data, d->data, n, xencons_mask(*d->prod, d->size), &masked_cons, d->size);
            else
                xs_read_packet(data, d->data, n, xs_mask(*d->prod, d->size), &masked_cons, d->size);
            *d->cons += n;
            printf("R ");
            for (unsigned i = 0; i < n; i++) printf("%02x", data[i]);
            printf("\n");
        }
    }
    printf("P ");
    for (size_t i = 0; i < struct_size; i++) printf("%02x", page[i]);
    printf("\n");
    return 0;
}
