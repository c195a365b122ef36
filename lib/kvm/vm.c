/* SPDX-License-Identifier: MIT */
/* A KVM VM: memory slots, in-kernel irqchip and PIT, the I/O buses. */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "internal.h"

/* Just below the firmware window at the top of 4 GiB; KVM needs three
 * pages for the real-mode TSS and one for the EPT identity map. */
#define KVM_IDENTITY_MAP_ADDR 0xfeffc000ull
#define KVM_TSS_ADDR 0xfeffd000ull

/* PC interrupt wiring: ISA IRQ n goes to PIC pin n and IOAPIC pin n,
 * except IRQ0 (the PIT), which reaches IOAPIC pin 2 as on real chipsets
 * and as the MADT's interrupt source override tells the guest. GSIs 16-23
 * are IOAPIC-only. KVM's default table sends GSI 0 to IOAPIC pin 0: a
 * kernel that trusts the override (KVM guests skip the timer check) would
 * never see a timer tick. */
static int set_pc_irq_routing(vmkit_vm *vm)
{
	struct kvm_irq_routing *r;
	uint32_t n = 0;
	int ret;

	r = calloc(1, sizeof(*r) + (40 + vm->n_msi_routes) * sizeof(r->entries[0]));
	if (!r)
		return vmkit__err(-ENOMEM, "GSI routing: out of memory");
	for (uint32_t gsi = 0; gsi < 24; gsi++) {
		if (gsi < 16 && gsi != 2) {
			r->entries[n].gsi = gsi;
			r->entries[n].type = KVM_IRQ_ROUTING_IRQCHIP;
			r->entries[n].u.irqchip.irqchip =
				gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
			r->entries[n].u.irqchip.pin = gsi % 8;
			n++;
		}
		if (gsi == 2)
			continue; /* the cascade: no ISA device raises it */
		r->entries[n].gsi = gsi;
		r->entries[n].type = KVM_IRQ_ROUTING_IRQCHIP;
		r->entries[n].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		r->entries[n].u.irqchip.pin = gsi == 0 ? 2 : gsi;
		n++;
	}
	/* MSI routes (virtio-pci MSI-X vectors). */
	for (uint32_t i = 0; i < vm->n_msi_routes; i++) {
		const struct vmkit_msi_route *m = &vm->msi_routes[i];
		if (!m->used)
			continue;
		r->entries[n].gsi = VMKIT_MSI_GSI_BASE + i;
		r->entries[n].type = KVM_IRQ_ROUTING_MSI;
		r->entries[n].u.msi.address_lo = (uint32_t)m->addr;
		r->entries[n].u.msi.address_hi = (uint32_t)(m->addr >> 32);
		r->entries[n].u.msi.data = m->data;
		n++;
	}
	r->nr = n;
	ret = ioctl(vm->fd, KVM_SET_GSI_ROUTING, r);
	free(r);
	if (ret < 0)
		return vmkit__err(-errno, "KVM_SET_GSI_ROUTING: %s", strerror(errno));
	return 0;
}

/* ---- device plumbing: ioeventfd, irqfd, MSI routes ------------------------ */

int vmkit__vm_ioeventfd(vmkit_vm *vm, uint64_t addr, uint32_t len, bool pio, bool datamatch,
			uint64_t data, int fd, bool assign)
{
	struct kvm_ioeventfd io = {
		.datamatch = data, .addr = addr, .len = len, .fd = fd,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
			 (datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) |
			 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	if (len != 0 && len != 1 && len != 2 && len != 4 && len != 8)
		return vmkit__err(-EINVAL, "ioeventfd: bad length %u", len);
	if (len == 0 && (pio || datamatch))
		return vmkit__err(-EINVAL, "ioeventfd: any-length matching is for MMIO without data");
	if (ioctl(vm->fd, KVM_IOEVENTFD, &io) < 0)
		return vmkit__err(-errno, "KVM_IOEVENTFD %s 0x%" PRIx64 ": %s",
				  assign ? "assign" : "deassign", addr, strerror(errno));
	return 0;
}

int vmkit__vm_irqfd(vmkit_vm *vm, uint32_t gsi, int fd, int resample_fd, bool assign)
{
	struct kvm_irqfd irq = { .fd = (uint32_t)fd, .gsi = gsi };

	if (!vm->has_irqchip)
		return vmkit__err(-EINVAL, "irqfd: no in-kernel irqchip");
	if (!assign) {
		irq.flags = KVM_IRQFD_FLAG_DEASSIGN;
	} else if (resample_fd >= 0) {
		irq.flags = KVM_IRQFD_FLAG_RESAMPLE;
		irq.resamplefd = (uint32_t)resample_fd;
	}
	if (ioctl(vm->fd, KVM_IRQFD, &irq) < 0)
		return vmkit__err(-errno, "KVM_IRQFD gsi %u: %s", gsi, strerror(errno));
	return 0;
}

int vmkit__vm_msi_route_add(vmkit_vm *vm, uint64_t addr, uint32_t data, uint32_t *gsi)
{
	uint32_t i;
	int ret;

	if (!vm->has_irqchip)
		return vmkit__err(-EINVAL, "MSI route: no in-kernel irqchip");
	pthread_mutex_lock(&vm->route_lock);
	for (i = 0; i < vm->n_msi_routes && vm->msi_routes[i].used; i++)
		;
	if (i == vm->n_msi_routes) {
		uint32_t n = vm->n_msi_routes ? vm->n_msi_routes * 2 : 32;
		struct vmkit_msi_route *nr;
		if (n > VMKIT_MSI_MAX_ROUTES)
			n = VMKIT_MSI_MAX_ROUTES;
		if (i >= n) {
			pthread_mutex_unlock(&vm->route_lock);
			return vmkit__err(-ENOSPC, "MSI route: all %u routes in use", VMKIT_MSI_MAX_ROUTES);
		}
		nr = realloc(vm->msi_routes, n * sizeof(*nr));
		if (!nr) {
			pthread_mutex_unlock(&vm->route_lock);
			return vmkit__err(-ENOMEM, "MSI route: out of memory");
		}
		memset(nr + vm->n_msi_routes, 0, (n - vm->n_msi_routes) * sizeof(*nr));
		vm->msi_routes = nr;
		vm->n_msi_routes = n;
	}
	vm->msi_routes[i] = (struct vmkit_msi_route){ .used = true, .addr = addr, .data = data };
	ret = set_pc_irq_routing(vm);
	if (ret < 0)
		vm->msi_routes[i].used = false;
	else
		*gsi = VMKIT_MSI_GSI_BASE + i;
	pthread_mutex_unlock(&vm->route_lock);
	return ret;
}

static struct vmkit_msi_route *msi_route(vmkit_vm *vm, uint32_t gsi)
{
	if (gsi < VMKIT_MSI_GSI_BASE || gsi - VMKIT_MSI_GSI_BASE >= vm->n_msi_routes ||
	    !vm->msi_routes[gsi - VMKIT_MSI_GSI_BASE].used)
		return NULL;
	return &vm->msi_routes[gsi - VMKIT_MSI_GSI_BASE];
}

int vmkit__vm_msi_route_update(vmkit_vm *vm, uint32_t gsi, uint64_t addr, uint32_t data)
{
	struct vmkit_msi_route *m, old;
	int ret;

	pthread_mutex_lock(&vm->route_lock);
	m = msi_route(vm, gsi);
	if (!m) {
		pthread_mutex_unlock(&vm->route_lock);
		return vmkit__err(-ENOENT, "MSI route: GSI %u is not an MSI route", gsi);
	}
	if (m->addr == addr && m->data == data) {
		pthread_mutex_unlock(&vm->route_lock);
		return 0;
	}
	old = *m;
	m->addr = addr;
	m->data = data;
	ret = set_pc_irq_routing(vm);
	if (ret < 0)
		*m = old;
	pthread_mutex_unlock(&vm->route_lock);
	return ret;
}

int vmkit__vm_msi_route_del(vmkit_vm *vm, uint32_t gsi)
{
	struct vmkit_msi_route *m;
	int ret;

	pthread_mutex_lock(&vm->route_lock);
	m = msi_route(vm, gsi);
	if (!m) {
		pthread_mutex_unlock(&vm->route_lock);
		return vmkit__err(-ENOENT, "MSI route: GSI %u is not an MSI route", gsi);
	}
	m->used = false;
	ret = set_pc_irq_routing(vm);
	pthread_mutex_unlock(&vm->route_lock);
	return ret;
}

int vmkit__vm_signal_msi(vmkit_vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32), .data = data,
	};
	int r;

	if (!vm->has_irqchip)
		return vmkit__err(-EINVAL, "MSI: no in-kernel irqchip");
	r = ioctl(vm->fd, KVM_SIGNAL_MSI, &msi);
	if (r < 0 && errno == EPERM)
		return 0; /* KVM's -1: no vCPU is a destination of the message */
	if (r < 0)
		return vmkit__err(-errno, "KVM_SIGNAL_MSI: %s", strerror(errno));
	return r > 0 ? 1 : 0;
}

static int create_platform(vmkit_vm *vm)
{
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

	if (ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		return vmkit__err(-errno, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	if (ioctl(vm->fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0)
		return vmkit__err(-errno, "KVM_SET_TSS_ADDR: %s", strerror(errno));
	if (vm->flags & VMKIT_VM_NO_IRQCHIP)
		return 0;
	if (ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return vmkit__err(-errno, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
	if (set_pc_irq_routing(vm) < 0)
		return -EIO;
	if (ioctl(vm->fd, KVM_CREATE_PIT2, &pit) < 0)
		return vmkit__err(-errno, "KVM_CREATE_PIT2: %s", strerror(errno));
	vm->has_irqchip = true;
	return 0;
}

int vmkit_vm_new(vmkit_host *host, const vmkit_vm_config *cfg, vmkit_vm **out)
{
	static const vmkit_vm_config defaults = VMKIT_VM_CONFIG_INIT;
	vmkit_vm *vm;
	int ret;

	if (!host || !out)
		return vmkit__err(-EINVAL, "vmkit_vm_new: NULL argument");
	*out = NULL;
	if (!cfg)
		cfg = &defaults;
	if (cfg->size < sizeof(*cfg) || (cfg->flags & ~VMKIT_VM_NO_IRQCHIP) ||
	    cfg->unhandled_policy > VMKIT_UNHANDLED_EXIT)
		return vmkit__err(-EINVAL, "vmkit_vm_new: bad config (size, flags or policy)");
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return vmkit__err(-ENOMEM, "out of memory");
	vm->host = host;
	vm->flags = cfg->flags;
	vm->unhandled_policy = cfg->unhandled_policy;
	vm->log = host->log;
	vmkit__gmem_init(&vm->mem);
	vmkit__bus_init(&vm->pio);
	vmkit__bus_init(&vm->mmio);
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->route_lock, NULL);
	do {
		vm->fd = ioctl(host->fd, KVM_CREATE_VM, 0);
	} while (vm->fd < 0 && errno == EINTR);
	if (vm->fd < 0) {
		ret = vmkit__err(-errno, "KVM_CREATE_VM: %s", strerror(errno));
		vm->fd = -1;
		vmkit_vm_free(vm);
		return ret;
	}
	ret = create_platform(vm);
	if (ret < 0) {
		vmkit_vm_free(vm);
		return ret;
	}
	*out = vm;
	return 0;
}

void vmkit_vm_free(vmkit_vm *vm)
{
	if (!vm)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(vm->vcpus); i++)
		vmkit_vcpu_free(vm->vcpus[i]);
	if (vm->fd >= 0)
		close(vm->fd);
	vmkit__gmem_destroy(&vm->mem);
	vmkit__bus_destroy(&vm->pio);
	vmkit__bus_destroy(&vm->mmio);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->route_lock);
	free(vm->msi_routes);
	free(vm);
}

static int set_slot(vmkit_vm *vm, const struct vmkit_gmem_region *r, bool remove)
{
	struct kvm_userspace_memory_region kr = {
		.slot = (uint32_t)r->id,
		.flags = (r->flags & VMKIT_MEMORY_READONLY) ? KVM_MEM_READONLY : 0,
		.guest_phys_addr = r->gpa,
		.memory_size = remove ? 0 : r->len,
		.userspace_addr = (uintptr_t)r->hva,
	};

	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
		return vmkit__err(-errno, "KVM_SET_USER_MEMORY_REGION slot %u: %s", kr.slot,
				  strerror(errno));
	return 0;
}

/* Guest-memory readers (devices on vCPU threads) take no lock: the map
 * only changes while no vCPU is inside vmkit_vcpu_run(). Called locked. */
static bool any_vcpu_running(vmkit_vm *vm)
{
	for (size_t i = 0; i < ARRAY_SIZE(vm->vcpus); i++)
		if (vm->vcpus[i] && atomic_load(&vm->vcpus[i]->thread))
			return true;
	return false;
}

int vmkit_vm_add_memory(vmkit_vm *vm, const vmkit_memory_region *region)
{
	int id, ret;

	if (!vm || !region || region->size < sizeof(*region) ||
	    (region->flags & ~(VMKIT_MEMORY_READONLY | VMKIT_MEMORY_HUGEPAGES | VMKIT_MEMORY_NODUMP |
			       VMKIT_MEMORY_NOHUGEPAGES)))
		return vmkit__err(-EINVAL, "vmkit_vm_add_memory: bad arguments");
	if ((region->flags & VMKIT_MEMORY_HUGEPAGES) && (region->flags & VMKIT_MEMORY_NOHUGEPAGES))
		return vmkit__err(-EINVAL, "vmkit_vm_add_memory: HUGEPAGES and NOHUGEPAGES together");
	pthread_mutex_lock(&vm->lock);
	if (any_vcpu_running(vm)) {
		pthread_mutex_unlock(&vm->lock);
		return vmkit__err(-EBUSY, "guest memory cannot change while a vCPU runs");
	}
	id = vmkit__gmem_add(&vm->mem, region->gpa, region->length, region->backing, region->flags);
	if (id >= 0) {
		ret = set_slot(vm, vmkit__gmem_find(&vm->mem, id), false);
		if (ret < 0) {
			vmkit__gmem_remove(&vm->mem, id);
			id = ret;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return id;
}

int vmkit_vm_remove_memory(vmkit_vm *vm, int id)
{
	const struct vmkit_gmem_region *r;
	int ret;

	if (!vm)
		return vmkit__err(-EINVAL, "NULL vm");
	pthread_mutex_lock(&vm->lock);
	r = vmkit__gmem_find(&vm->mem, id);
	if (any_vcpu_running(vm))
		ret = vmkit__err(-EBUSY, "guest memory cannot change while a vCPU runs");
	else if (!r)
		ret = vmkit__err(-ENOENT, "no memory region with id %d", id);
	else if ((ret = set_slot(vm, r, true)) == 0)
		ret = vmkit__gmem_remove(&vm->mem, id);
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vmkit_vm_read(vmkit_vm *vm, uint64_t gpa, void *buf, size_t len)
{
	if (!vm || (!buf && len))
		return vmkit__err(-EINVAL, "vmkit_vm_read: bad arguments");
	if (vmkit__gmem_read(&vm->mem, gpa, buf, len) < 0)
		return vmkit__err(-EFAULT, "guest range 0x%llx+0x%zx is not memory",
				  (unsigned long long)gpa, len);
	return 0;
}

int vmkit_vm_write(vmkit_vm *vm, uint64_t gpa, const void *buf, size_t len)
{
	if (!vm || (!buf && len))
		return vmkit__err(-EINVAL, "vmkit_vm_write: bad arguments");
	if (vmkit__gmem_write(&vm->mem, gpa, buf, len) < 0)
		return vmkit__err(-EFAULT, "guest range 0x%llx+0x%zx is not memory",
				  (unsigned long long)gpa, len);
	return 0;
}

int vmkit_vm_translate(vmkit_vm *vm, uint64_t gpa, size_t len, void **hva)
{
	void *p;

	if (!vm || !hva)
		return vmkit__err(-EINVAL, "vmkit_vm_translate: bad arguments");
	p = vmkit__gmem_ptr(&vm->mem, gpa, len);
	if (!p)
		return vmkit__err(-EFAULT, "guest range 0x%llx+0x%zx is not in one memory region",
				  (unsigned long long)gpa, len);
	*hva = p;
	return 0;
}

int vmkit_vm_register_pio(vmkit_vm *vm, uint16_t base, uint32_t len, const vmkit_io_ops *ops,
			  void *opaque, uint32_t flags)
{
	if (!vm || flags || len == 0 || (uint32_t)base + len > 0x10000)
		return vmkit__err(-EINVAL, "vmkit_vm_register_pio: bad arguments");
	return vmkit__bus_register(&vm->pio, base, len, ops, opaque);
}

int vmkit_vm_unregister_pio(vmkit_vm *vm, uint16_t base)
{
	if (!vm)
		return vmkit__err(-EINVAL, "NULL vm");
	return vmkit__bus_unregister(&vm->pio, base);
}

int vmkit_vm_register_mmio(vmkit_vm *vm, uint64_t base, uint64_t len, const vmkit_io_ops *ops,
			   void *opaque, uint32_t flags)
{
	if (!vm || flags)
		return vmkit__err(-EINVAL, "vmkit_vm_register_mmio: bad arguments");
	return vmkit__bus_register(&vm->mmio, base, len, ops, opaque);
}

int vmkit_vm_unregister_mmio(vmkit_vm *vm, uint64_t base)
{
	if (!vm)
		return vmkit__err(-EINVAL, "NULL vm");
	return vmkit__bus_unregister(&vm->mmio, base);
}

int vmkit_vm_set_irq(vmkit_vm *vm, uint32_t gsi, bool level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	if (!vm || !vm->has_irqchip)
		return vmkit__err(-EINVAL, "vmkit_vm_set_irq: no in-kernel irqchip");
	if (ioctl(vm->fd, KVM_IRQ_LINE, &irq) < 0)
		return vmkit__err(-errno, "KVM_IRQ_LINE %u: %s", gsi, strerror(errno));
	return 0;
}

int vmkit_vm_get_stats(vmkit_vm *vm, vmkit_vm_stats *st)
{
	if (!vm || !st || st->size < sizeof(*st))
		return vmkit__err(-EINVAL, "vmkit_vm_get_stats: bad arguments");
	st->pio_exits = vm->pio_exits;
	st->mmio_exits = vm->mmio_exits;
	st->unhandled_reads = vm->unhandled_reads;
	st->unhandled_writes = vm->unhandled_writes;
	pthread_mutex_lock(&vm->lock);
	st->memory_bytes = vmkit__gmem_total(&vm->mem);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}
