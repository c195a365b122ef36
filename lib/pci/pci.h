/* SPDX-License-Identifier: MIT */
/* A PCI host bridge for bus 0 and a generic PCI device model (PCI Local
 * Bus 3.0: type 0 config header, BARs, capability list, MSI-X from 6.8.2,
 * INTx).
 *
 * What the host claims in the VM (lib/arch/x86/x86.h has the addresses):
 *  - ports 0xcf8-0xcff, config mechanism #1: a 4-byte access at 0xcf8 is
 *    the address register, 0xcfc-0xcff the data window (1, 2 or 4 bytes at
 *    any offset). The reset control register shares the dword at 0xcf9 on
 *    a PC: the host takes over whatever handler sat at port 0xcf9 when it
 *    was created and hands it the 1-byte accesses there (so create the
 *    host after that port is registered);
 *  - ECAM (MMCONFIG) for bus 0: 1 MiB at X86_PCI_ECAM_BASE, 4 KiB per
 *    function, reads as zeros past the 256-byte header;
 *  - the BAR window (X86_PCI_MMIO32_BASE, X86_PCI_MMIO32_SIZE) as one MMIO
 *    range: the host dispatches each access to the BAR that decodes it.
 *    BARs are pre-assigned there when a device is added.
 *
 * A guest may move a BAR anywhere. Inside the window the move takes
 * effect at once, however the config write arrived. Outside it the BAR
 * needs an MMIO range of its own on the VM's bus, which the host
 * registers when the BAR is programmed through ports 0xcf8/0xcfc (what
 * SeaBIOS does: it places BARs just below 0xfec00000). A config write that
 * arrives through ECAM is itself an MMIO access: it runs under the VM's
 * MMIO bus lock, where that bus cannot change, so a BAR moved outside the
 * window through ECAM does not decode until it is written again through
 * the ports (Linux on x86 uses the ports for the first 256 bytes and ECAM
 * only beyond). A BAR that would overlap guest RAM, another device's range
 * or an earlier BAR does not decode; the refusal is logged (VM logger).
 *
 * Interrupts: MSI-X messages are sent with KVM_SIGNAL_MSI at the moment
 * the device raises the vector, reading the table entry then. The
 * alternative, a GSI route plus an irqfd per vector, costs the same one
 * syscall per interrupt from a userspace device (an eventfd write instead
 * of an ioctl) but needs a whole-table KVM_SET_GSI_ROUTING (with an SRCU
 * grace period) on every table write or mask change, which Linux does on
 * each affinity change, plus an fd and a GSI per vector; it only pays off
 * for an in-kernel producer (vhost, VFIO), which vmkit has not. INTx is a
 * level line per GSI (X86_PCI_INTX_GSI_BASE + (slot + pin) % 4), counted
 * across the devices that share it, through KVM_IRQ_LINE.
 *
 * Locks, in order: host->lock (a rwlock: config accesses hold it for
 * writing, BAR accesses for reading), then the owners' own locks, then
 * host->irq_lock (INTx and MSI-X state). Owner callbacks (bar_map,
 * cfg_hook) run with host->lock held for writing, BAR ops with it held
 * for reading; pci_msix_notify() and pci_intx_set() take only irq_lock, so
 * an owner may call them holding its own lock, from any thread.
 * host->reg_lock serialises the port path's own MMIO-range updates and is
 * taken before host->lock. */
#ifndef VMKIT_PCI_H
#define VMKIT_PCI_H

#include "internal.h"

struct x86_buf;
struct pci_host;
struct pci_device;

#define PCI_SLOTS 32
#define PCI_NUM_BARS 6
#define PCI_CONFIG_SIZE 256
#define PCI_ECAM_FUNC_SIZE 4096u
#define PCI_BAR_MIN_SIZE 0x1000ull
#define PCI_MSIX_MAX_VECTORS 2048u
#define PCI_MSIX_ENTRY_SIZE 16u
/* A BAR address meaning "does not decode". */
#define PCI_ADDR_NONE UINT64_MAX

/* Type 0 configuration header. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_CACHE_LINE_SIZE 0x0c
#define PCI_LATENCY_TIMER 0x0d
#define PCI_HEADER_TYPE 0x0e
#define PCI_BASE_ADDRESS_0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_ROM_ADDRESS 0x30
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d

#define PCI_COMMAND_MEMORY 0x0002u
#define PCI_COMMAND_MASTER 0x0004u
#define PCI_COMMAND_INTX_DISABLE 0x0400u
#define PCI_STATUS_INTERRUPT 0x0008u
#define PCI_STATUS_CAP_LIST 0x0010u
#define PCI_BAR_MEM_TYPE_64 0x4u
#define PCI_BAR_MEM_PREFETCH 0x8u

#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11
/* MSI-X capability: control word at +2, table and PBA offset/BIR at +4, +8. */
#define PCI_MSIX_FLAGS_ENABLE 0x8000u
#define PCI_MSIX_FLAGS_MASKALL 0x4000u
#define PCI_MSIX_ENTRY_CTRL_MASKBIT 0x1u

/* BAR @bar of @d started or stopped decoding, or moved: @old_addr and
 * @new_addr are its base before and after, PCI_ADDR_NONE when it does not
 * decode. Host lock held for writing; may run on a vCPU thread (config
 * write), or in pci_host_add/pci_host_remove. */
typedef void (*pci_bar_map_fn)(void *opaque, struct pci_device *d, unsigned bar,
			       uint64_t old_addr, uint64_t new_addr);
/* A guest access to config bytes [@off, @off + @len) that overlaps
 * [hook_off, hook_off + hook_len): called before a read (the owner may
 * refresh d->config there) and after a write (d->config holds the written
 * bytes, through wmask). Host lock held for writing. */
typedef void (*pci_cfg_hook_fn)(void *opaque, struct pci_device *d, uint32_t off, uint32_t len,
				bool write);

struct pci_bar {
	uint64_t size;          /* 0: not implemented (or the upper half of a 64-bit BAR) */
	bool is64, prefetch;
	const vmkit_io_ops *ops; /* accesses at offsets inside the BAR (host lock read-held) */
	void *opaque;
	/* The host's: */
	uint64_t addr;          /* where it decodes now, or PCI_ADDR_NONE */
	uint64_t reg;           /* its own MMIO range outside the window, or PCI_ADDR_NONE */
	uint64_t refused;       /* last outside address refused (logged once), or PCI_ADDR_NONE */
	struct pci_device *dev;
	unsigned index;
};

/* A PCI function 0 that its owner embeds and fills with pci_device_*
 * before pci_host_add(). Everything below "the host's" is managed by the
 * host. */
struct pci_device {
	char name[32];
	uint8_t config[PCI_CONFIG_SIZE];
	uint8_t wmask[PCI_CONFIG_SIZE];  /* guest-writable bits */
	struct pci_bar bar[PCI_NUM_BARS];
	pci_bar_map_fn bar_map;          /* may be NULL */
	pci_cfg_hook_fn cfg_hook;        /* may be NULL */
	uint32_t hook_off, hook_len;
	void *opaque;                    /* for bar_map and cfg_hook */
	/* The host's: */
	struct pci_host *host;
	int slot;
	uint32_t gsi;
	uint16_t cap_next;               /* capability list builder: next free byte */
	uint8_t cap_last;                /* the last capability, 0 if none */
	uint8_t msix_cap;                /* 0: no MSI-X */
	uint16_t msix_nvec;
	unsigned msix_bar;
	uint32_t msix_table_off, msix_pba_off;
	/* Under host->irq_lock: 4 words per vector (message address low and
	 * high, data, vector control), and the pending bits. */
	uint32_t *msix_table;
	uint64_t *msix_pba;
	bool uses_intx;
	/* Under host->irq_lock: */
	bool intx_level, intx_asserted, intx_disabled, msix_enabled, msix_fmask;
};

/* ---- building a device (before pci_host_add) -------------------------- */

/* Zero @d and set up its header: ids, revision, @class_code (base class
 * << 16 | subclass << 8 | prog-if), header type 0, no BARs or
 * capabilities, command register with memory decode ON (see
 * pci_host_add). @name is for logs. */
void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
		     uint8_t revision, uint32_t class_code, uint16_t subsys_vendor,
		     uint16_t subsys_id);
/* A memory BAR of @size bytes (a power of two, at least 4 KiB; below
 * 4 GiB for a 32-bit BAR) in BAR register @bar (a 64-bit one also takes
 * @bar + 1). @ops sees offsets inside the BAR, except the MSI-X table and
 * PBA, which the host serves. -EINVAL for a bad request. */
int pci_device_add_bar(struct pci_device *d, unsigned bar, uint64_t size, bool is64,
		       bool prefetch, const vmkit_io_ops *ops, void *opaque);
/* Append a capability: @len bytes (2..) of @cap, whose byte 0 is the
 * capability id; the host fills in the next pointer. Returns its config
 * offset, or -ENOSPC (header full) / -EINVAL. Its bytes are read-only
 * until pci_device_writable(). */
int pci_device_add_cap(struct pci_device *d, const void *cap, uint32_t len);
/* Make config bytes [@off, @off + @len) fully writable by the guest. */
void pci_device_writable(struct pci_device *d, uint32_t off, uint32_t len);
/* An MSI-X capability with @nvec (1..2048) vectors, the table at
 * @table_off and the PBA at @pba_off inside BAR @bar (added before; both
 * 8-byte aligned, inside the BAR, not overlapping). Vectors start masked.
 * Returns the capability offset or a negative error. */
int pci_device_add_msix(struct pci_device *d, uint16_t nvec, unsigned bar, uint32_t table_off,
			uint32_t pba_off);
/* The device raises INTA (interrupt pin 1). */
void pci_device_use_intx(struct pci_device *d);
/* Free what the pci_device_* calls allocated (after pci_host_remove). */
void pci_device_release(struct pci_device *d);

/* ---- the host ------------------------------------------------------------ */

/* Create the host bridge and claim the ports and ranges listed above in
 * @vm. Slot 0 is the host bridge, class 0x060000, with the ids of
 * Intel's 440FX (8086:1237), which is what SeaBIOS keys its PCI memory
 * window on: it then allocates BARs in [0x80000000 or 0xc0000000,
 * 0xfec00000) and sets an MTRR that makes that range uncached. With an id
 * it does not know, SeaBIOS starts the window at the end of RAM, which
 * vmkit's e820 does not align, and its MTRR write with those low bits
 * takes a #GP (a triple fault at boot). Not the Q35 MCH id (8086:29c0)
 * either: SeaBIOS would program PCIEXBAR and use MMCONFIG at 0xb0000000,
 * which is RAM here. The 440FX's PAM/SMRAM registers are not modelled
 * (read as 0, writes dropped): vmkit's BIOS area is plain RAM. */
int pci_host_new(vmkit_vm *vm, struct pci_host **out);
/* Without a VM (unit tests, or an embedder's own dispatch): nothing is
 * registered anywhere; guest accesses come through pci_host_pio_*,
 * pci_host_ecam_* and pci_host_mmio_*; interrupts go to the hooks; @mem
 * (may be NULL) is the guest memory the devices use and BARs may not
 * overlap. A BAR outside the window decodes once written through the
 * ports, as with a VM. */
struct pci_host_hooks {
	const struct vmkit_gmem *mem;
	void (*set_irq)(void *ctx, uint32_t gsi, bool level);
	void (*msi)(void *ctx, uint64_t addr, uint32_t data);
	void *ctx;
};
int pci_host_new_detached(const struct pci_host_hooks *hooks, struct pci_host **out);
/* Unregisters everything (devices still attached are removed first; their
 * owners must still be alive). NULL is a no-op. */
void pci_host_free(struct pci_host *h);
/* Attach @d in @slot (1..31, or -1 for the lowest free one) and return
 * the slot, or -EBUSY / -ENOSPC (no slot, or the BAR window is full) /
 * -EINVAL. Its BARs are assigned in the window now and decode at once
 * (memory decode starts ON) so that a kernel booted directly, without
 * firmware to program them, finds working devices; firmware reprograms
 * them anyway. bar_map is called for each BAR before this returns. */
int pci_host_add(struct pci_host *h, struct pci_device *d, int slot);
/* Detach @d: its BARs stop decoding (bar_map is called), its INTx line
 * drops. Not while a vCPU may still access it. */
void pci_host_remove(struct pci_host *h, struct pci_device *d);
vmkit_vm *pci_host_vm(const struct pci_host *h);
/* Guest memory: the VM's, or the hooks' (NULL without either). */
const struct vmkit_gmem *pci_host_mem(const struct pci_host *h);
/* GSI of INTx @pin (0 = INTA) of @slot. */
uint32_t pci_intx_gsi(unsigned slot, unsigned pin);
/* The DSDT's \_SB.PCI0 (PNP0A08 root bridge: _SEG/_BBN/_UID 0, _CRS with
 * bus 0, the I/O ranges around 0xcf8-0xcff, the BAR window; _PRT with
 * every slot's INTA-D on static GSIs) and \_SB.PRES (PNP0C02 reserving the
 * ECAM range, which Linux wants before it trusts the MCFG). */
void pci_host_dsdt(const struct pci_host *h, struct x86_buf *sb);

/* ---- guest accesses (what the registered ranges call; public for tests) -- */

/* @off from port 0xcf8 (0..7), @len 1..4. */
void pci_host_pio_read(struct pci_host *h, uint32_t off, void *data, uint32_t len);
void pci_host_pio_write(struct pci_host *h, uint32_t off, const void *data, uint32_t len);
/* @off inside the ECAM range, @len 1..8. */
void pci_host_ecam_read(struct pci_host *h, uint64_t off, void *data, uint32_t len);
void pci_host_ecam_write(struct pci_host *h, uint64_t off, const void *data, uint32_t len);
/* An access to guest-physical @gpa: true if a BAR decodes it (a read of
 * nothing leaves @data untouched). @len 1..8. */
bool pci_host_mmio_read(struct pci_host *h, uint64_t gpa, void *data, uint32_t len);
bool pci_host_mmio_write(struct pci_host *h, uint64_t gpa, const void *data, uint32_t len);
/* An access to BAR @bar of @d at @off as if through memory, for config
 * windows into a BAR (virtio's VIRTIO_PCI_CAP_PCI_CFG); call with the host
 * lock held (from cfg_hook). Out-of-range parts read as all ones / are
 * dropped. */
void pci_device_bar_rw(struct pci_device *d, unsigned bar, uint64_t off, void *data,
		       uint32_t len, bool write);

/* ---- interrupts (any thread; take only host->irq_lock) ------------------- */

/* Is MSI-X enabled by the driver? */
bool pci_msix_enabled(struct pci_device *d);
/* Raise MSI-X @vector: 1 sent, 0 left pending (the vector or the function
 * is masked; sent on unmask), -EINVAL (MSI-X off, or no such vector). */
int pci_msix_notify(struct pci_device *d, uint16_t vector);
/* The device's INTx level (the Interrupt Status bit); the line follows it
 * unless Interrupt Disable is set or MSI-X is enabled. */
void pci_intx_set(struct pci_device *d, bool level);

#endif
