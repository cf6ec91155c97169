/*
 * conch-pv-guest: the parts of a 64-bit Xen PV kernel that must be assembly —
 * the ELF notes Xen's domain builder reads, the entry point, the hypercall page
 * and a trampoline into it, rdtsc, and the mem* functions the compiler calls.
 * Everything else is Swift (Sources/). Built by build.sh; see docs/PV-GUEST.md.
 */
#include <xen/elfnote.h>

/* One ELF note in .note.Xen: name "Xen", the type, and the descriptor. */
.macro xen_note_begin type:req
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4                     /* name size, "Xen" and its NUL */
    .long 2f - 1f               /* descriptor size */
    .long \type
    .asciz "Xen"
    .balign 4
1:
.endm
.macro xen_note_end
2:  .balign 4
    .popsection
.endm
.macro xen_note_string type:req, text:req
    xen_note_begin \type
    .asciz "\text"
    xen_note_end
.endm
.macro xen_note_address type:req, value:req
    xen_note_begin \type
    .quad \value
    xen_note_end
.endm

xen_note_string XEN_ELFNOTE_GUEST_OS, Conch
xen_note_string XEN_ELFNOTE_GUEST_VERSION, 1
xen_note_string XEN_ELFNOTE_XEN_VERSION, xen-3.0
xen_note_string XEN_ELFNOTE_LOADER, generic
xen_note_address XEN_ELFNOTE_VIRT_BASE, 0
xen_note_address XEN_ELFNOTE_PADDR_OFFSET, 0
xen_note_address XEN_ELFNOTE_ENTRY, _start
xen_note_address XEN_ELFNOTE_HYPERCALL_PAGE, hypercall_page

    .section .text.entry, "ax"
    .globl _start
/* Xen enters in long mode, events masked, %rsi = start_info's virtual address. */
_start:
    cld
    lea stack_top(%rip), %rsp
    mov %rsi, %rdi
    call conch_pv_main
    /* conch_pv_main shuts the domain down and never returns; if it did, spin. */
1:  pause
    jmp 1b

/* Xen fills this page with one 32-byte stub per hypercall number. */
    .balign 4096
    .globl hypercall_page
hypercall_page:
    .fill 4096, 1, 0

    .text
/* long conch_hypercall(long number, long a1, long a2, long a3): the stub for
 * `number` takes its arguments in rdi, rsi, rdx and returns in rax. */
    .globl conch_hypercall
conch_hypercall:
    shl $5, %rdi
    lea hypercall_page(%rip), %rax
    add %rdi, %rax
    mov %rsi, %rdi
    mov %rdx, %rsi
    mov %rcx, %rdx
    jmp *%rax

/* unsigned long conch_rdtsc(void) */
    .globl conch_rdtsc
conch_rdtsc:
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    ret

/* void *NAME(void): the address of SYMBOL, for Swift. */
.macro address_function name:req, symbol:req
    .globl \name
\name:
    lea \symbol(%rip), %rax
    ret
.endm

/* The heap's bounds; the page whose mapping becomes shared info; the one that
 * becomes grant table frame 0; the ring of the guest's channel, granted to dom0. */
address_function conch_heap_start, heap
address_function conch_heap_end, heap_end
address_function conch_shared_info_page, shared_info_page
address_function conch_grant_table_page, grant_table_page
address_function conch_channel_page, channel_page

/* The C allocator entry points Embedded Swift calls, in Swift (Heap.swift). */
    .globl posix_memalign
posix_memalign:
    jmp conch_posix_memalign
    .globl free
free:
    jmp conch_free
/* Hashing seeds (the standard library's Set and Dictionary). */
    .globl arc4random_buf
arc4random_buf:
    jmp conch_random_bytes

    .globl memcpy
memcpy:
    mov %rdi, %rax
    mov %rdx, %rcx
    rep movsb
    ret

    .globl memmove
memmove:
    mov %rdi, %rax
    mov %rdx, %rcx
    cmp %rsi, %rdi
    jbe 1f                      /* destination below the source: copy forwards */
    lea -1(%rsi,%rdx), %rsi
    lea -1(%rdi,%rdx), %rdi
    std
    rep movsb
    cld
    ret
1:  rep movsb
    ret

    .globl memset
memset:
    mov %rdi, %r8
    mov %esi, %eax
    mov %rdx, %rcx
    rep stosb
    mov %r8, %rax
    ret

    .globl memcmp
    .globl bcmp
memcmp:
bcmp:
    xor %eax, %eax
    test %rdx, %rdx
    jz 2f
1:  movzbl (%rdi), %eax
    movzbl (%rsi), %ecx
    sub %ecx, %eax
    jnz 2f
    inc %rdi
    inc %rsi
    dec %rdx
    jnz 1b
2:  ret

    .bss
    .balign 4096
shared_info_page:
    .skip 4096
grant_table_page:
    .skip 4096
channel_page:
    .skip 4096
stack:
    .skip 65536
stack_top:
heap:
    .skip 8 << 20
heap_end:
