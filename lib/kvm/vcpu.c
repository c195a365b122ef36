/* SPDX-License-Identifier: MIT */
/* vCPUs: creation, the run loop with in-process PIO/MMIO dispatch, kicks,
 * and the architectural state getters/setters a snapshot reuses. */
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/* vmkit's public state structs are byte-for-byte KVM's where the layouts
 * agree; the asserts keep it so. */
_Static_assert(sizeof(vmkit_regs) == sizeof(struct kvm_regs), "regs layout");
_Static_assert(sizeof(vmkit_sregs) == sizeof(struct kvm_sregs), "sregs layout");
_Static_assert(sizeof(vmkit_fpu) == sizeof(struct kvm_fpu), "fpu layout");
_Static_assert(sizeof(vmkit_lapic) == sizeof(struct kvm_lapic_state), "lapic layout");
_Static_assert(sizeof(vmkit_xsave) == sizeof(struct kvm_xsave), "xsave layout");

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

static void kick_handler(int sig)
{
	(void)sig;
}

/* The kick signal only has to interrupt KVM_RUN; its handler does nothing.
 * This is the library's one process-wide side effect. */
static void install_kick_handler(void)
{
	struct sigaction sa = { .sa_handler = kick_handler };

	sigemptyset(&sa.sa_mask);
	sigaction(vmkit__kick_signal(), &sa, NULL);
}

int vmkit__kick_signal(void)
{
	return SIGRTMIN + 7;
}

int vmkit_vcpu_new(vmkit_vm *vm, uint32_t index, vmkit_vcpu **out)
{
	vmkit_vcpu *v;
	int ret;

	if (!vm || !out || index >= VMKIT_MAX_CPUS)
		return vmkit__err(-EINVAL, "vmkit_vcpu_new: bad arguments (index < %d)", VMKIT_MAX_CPUS);
	*out = NULL;
	pthread_once(&kick_once, install_kick_handler);
	pthread_mutex_lock(&vm->lock);
	if (vm->vcpus[index]) {
		pthread_mutex_unlock(&vm->lock);
		return vmkit__err(-EEXIST, "vCPU %u already exists", index);
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&vm->lock);
		return vmkit__err(-ENOMEM, "out of memory");
	}
	v->vm = vm;
	v->index = index;
	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0) {
		ret = vmkit__err(-errno, "KVM_CREATE_VCPU %u: %s", index, strerror(errno));
		free(v);
		pthread_mutex_unlock(&vm->lock);
		return ret;
	}
	v->run_size = (size_t)vm->host->vcpu_mmap_size;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		ret = vmkit__err(-errno, "mmap vCPU %u run area: %s", index, strerror(errno));
		close(v->fd);
		free(v);
		pthread_mutex_unlock(&vm->lock);
		return ret;
	}
	vm->vcpus[index] = v;
	pthread_mutex_unlock(&vm->lock);
	*out = v;
	return 0;
}

void vmkit_vcpu_free(vmkit_vcpu *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->vm->lock);
	v->vm->vcpus[v->index] = NULL;
	pthread_mutex_unlock(&v->vm->lock);
	munmap(v->run, v->run_size);
	close(v->fd);
	free(v);
}

uint32_t vmkit_vcpu_index(const vmkit_vcpu *v)
{
	return v ? v->index : UINT32_MAX;
}

int vmkit_vcpu_kick(vmkit_vcpu *v)
{
	pthread_t t;

	if (!v)
		return vmkit__err(-EINVAL, "NULL vcpu");
	atomic_store(&v->kick, true);
	/* Seen by a KVM_RUN about to start; the signal covers one in progress. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	t = atomic_load(&v->thread);
	if (t)
		pthread_kill(t, vmkit__kick_signal());
	return 0;
}

void vmkit_vcpu_request_stop(vmkit_vcpu *v)
{
	if (v)
		atomic_store(&v->stop_requested, true);
}

/* Unclaimed access under the VM's policy. Returns true if the run must
 * return to the caller. */
static bool unhandled(vmkit_vcpu *v, bool is_write, uint8_t *data, size_t n)
{
	vmkit_vm *vm = v->vm;

	if (is_write)
		atomic_fetch_add(&vm->unhandled_writes, 1);
	else
		atomic_fetch_add(&vm->unhandled_reads, 1);
	if (vm->unhandled_policy != VMKIT_UNHANDLED_IGNORE)
		return true;
	if (!is_write)
		memset(data, 0xff, n);
	return false;
}

static bool handle_io(vmkit_vcpu *v, vmkit_vcpu_exit *e)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	uint32_t len = run->io.size, count = run->io.count;
	bool all_claimed = true;

	atomic_fetch_add(&v->vm->pio_exits, 1);
	v->exits_io++;
	/* KVM guarantees data_offset + size * count lies in the run area. */
	for (uint32_t i = 0; i < count; i++) {
		uint8_t *d = data + (size_t)i * len;
		bool claimed = is_write ? vmkit__bus_write(&v->vm->pio, run->io.port, d, len) :
					  vmkit__bus_read(&v->vm->pio, run->io.port, d, len);
		if (!claimed && unhandled(v, is_write, d, len))
			all_claimed = false;
	}
	if (all_claimed)
		return false;
	e->kind = v->vm->unhandled_policy == VMKIT_UNHANDLED_EXIT ? VMKIT_VCPU_EXIT_IO :
								   VMKIT_VCPU_EXIT_UNHANDLED;
	e->u.io.port = run->io.port;
	e->u.io.len = (uint8_t)len;
	e->u.io.is_write = is_write;
	e->u.io.count = count;
	e->u.io.data = data;
	snprintf(e->detail, sizeof(e->detail), "unclaimed port %s 0x%x (%u bytes)",
		 is_write ? "write" : "read", run->io.port, len);
	return true;
}

static bool handle_mmio(vmkit_vcpu *v, vmkit_vcpu_exit *e)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len;
	bool claimed;

	atomic_fetch_add(&v->vm->mmio_exits, 1);
	v->exits_mmio++;
	if (len == 0 || len > sizeof(run->mmio.data))
		len = sizeof(run->mmio.data);
	claimed = run->mmio.is_write ?
		vmkit__bus_write(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len) :
		vmkit__bus_read(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
	if (claimed || !unhandled(v, run->mmio.is_write, run->mmio.data, len))
		return false;
	e->kind = v->vm->unhandled_policy == VMKIT_UNHANDLED_EXIT ? VMKIT_VCPU_EXIT_MMIO :
								   VMKIT_VCPU_EXIT_UNHANDLED;
	e->u.mmio.gpa = run->mmio.phys_addr;
	e->u.mmio.len = len;
	e->u.mmio.is_write = run->mmio.is_write;
	e->u.mmio.data = run->mmio.data;
	snprintf(e->detail, sizeof(e->detail), "unclaimed MMIO %s at 0x%llx (%u bytes)",
		 run->mmio.is_write ? "write" : "read", (unsigned long long)run->mmio.phys_addr, len);
	return true;
}

static void describe_internal_error(const struct kvm_run *run, vmkit_vcpu_exit *e)
{
	static const char *const sub[] = {
		[KVM_INTERNAL_ERROR_EMULATION] = "emulation failure",
		[KVM_INTERNAL_ERROR_SIMUL_EX] = "simultaneous exceptions",
		[KVM_INTERNAL_ERROR_DELIVERY_EV] = "event delivery failure",
		[KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON] = "unexpected exit reason",
	};
	uint32_t s = run->internal.suberror;
	int n = snprintf(e->detail, sizeof(e->detail), "KVM internal error: %s (suberror %u)",
			 s < ARRAY_SIZE(sub) && sub[s] ? sub[s] : "unknown", s);

	for (uint32_t i = 0; i < run->internal.ndata && i < 4 && n > 0 &&
			     (size_t)n < sizeof(e->detail); i++)
		n += snprintf(e->detail + n, sizeof(e->detail) - (size_t)n, " %llx",
			      (unsigned long long)run->internal.data[i]);
}

/* Fill @e from a KVM exit. Returns true when the exit ends this run. */
static bool handle_exit(vmkit_vcpu *v, vmkit_vcpu_exit *e)
{
	struct kvm_run *run = v->run;

	e->raw_reason = run->exit_reason;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		return handle_io(v, e);
	case KVM_EXIT_MMIO:
		return handle_mmio(v, e);
	case KVM_EXIT_HLT:
		v->exits_hlt++;
		e->kind = VMKIT_VCPU_EXIT_HLT;
		return true;
	case KVM_EXIT_SHUTDOWN:
		v->exits_other++;
		e->kind = VMKIT_VCPU_EXIT_SHUTDOWN;
		snprintf(e->detail, sizeof(e->detail), "triple fault (shutdown) on vCPU %u", v->index);
		return true;
	case KVM_EXIT_SYSTEM_EVENT:
		v->exits_other++;
		e->kind = VMKIT_VCPU_EXIT_SYSTEM_EVENT;
		e->u.system_event.type = run->system_event.type;
		e->u.system_event.ndata = run->system_event.ndata < 4 ? run->system_event.ndata : 4;
		for (uint32_t i = 0; i < e->u.system_event.ndata; i++)
			e->u.system_event.data[i] = run->system_event.data[i];
		return true;
	case KVM_EXIT_INTERNAL_ERROR:
		v->exits_other++;
		e->kind = VMKIT_VCPU_EXIT_INTERNAL_ERROR;
		describe_internal_error(run, e);
		return true;
	case KVM_EXIT_FAIL_ENTRY:
		v->exits_other++;
		e->kind = VMKIT_VCPU_EXIT_FAIL_ENTRY;
		snprintf(e->detail, sizeof(e->detail), "VM entry failed: hardware reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return true;
	case KVM_EXIT_INTR:
		v->exits_interrupted++;
		e->kind = VMKIT_VCPU_EXIT_INTERRUPTED;
		return true;
	default:
		v->exits_other++;
		e->kind = VMKIT_VCPU_EXIT_OTHER;
		snprintf(e->detail, sizeof(e->detail), "unexpected KVM exit reason %u",
			 run->exit_reason);
		return true;
	}
}

/* KVM completes an I/O exit (an IN's data into the register, RIP past an
 * OUT) only when KVM_RUN is entered again, and keeps that pending work
 * where userspace cannot see or save it. Before run returns for a kick or
 * a stop, enter once with immediate_exit set: KVM finishes the pending
 * operation and returns -EINTR without running guest code, so the state a
 * caller reads next (pause, snapshot) is whole. A completion that itself
 * needs userspace (the next fragment of a split MMIO access) is served
 * and the loop goes on; any other exit becomes what run reports. */
#define FINISH_IO_ROUNDS 4096u
static int finish_pending_io(vmkit_vcpu *v, vmkit_vcpu_exit *e, _Atomic bool *request)
{
	uint32_t kind = e->kind;

	/* A string instruction the guest points at MMIO (rep movs: one exit
	 * per element, its count the guest's) can need many rounds. */
	for (unsigned i = 0; i < FINISH_IO_ROUNDS; i++) {
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
			if (errno == EINTR || errno == EAGAIN)
				return 0;
			return vmkit__err(-errno, "KVM_RUN on vCPU %u: %s", v->index, strerror(errno));
		}
		v->runs++;
		if (handle_exit(v, e)) {
			/* That exit is for the caller; the kick or stop waits
			 * for the next call. */
			atomic_store(request, true);
			return 0;
		}
		e->kind = kind;
	}
	/* Still going: report the kick or stop now and ask for it again, so
	 * that the next call goes on finishing (never an error: the guest
	 * chose the count). */
	atomic_store(request, true);
	return 0;
}

int vmkit_vcpu_run(vmkit_vcpu *v, vmkit_vcpu_exit *e)
{
	int ret = 0;

	if (!v || !e || e->size < sizeof(*e))
		return vmkit__err(-EINVAL, "vmkit_vcpu_run: bad arguments");
	memset((uint8_t *)e + sizeof(e->size), 0, sizeof(*e) - sizeof(e->size));
	atomic_store(&v->thread, pthread_self());
	for (;;) {
		__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		if (atomic_exchange(&v->kick, false)) {
			v->exits_interrupted++;
			e->kind = VMKIT_VCPU_EXIT_INTERRUPTED;
			ret = finish_pending_io(v, e, &v->kick);
			break;
		}
		if (atomic_exchange(&v->stop_requested, false)) {
			e->kind = VMKIT_VCPU_EXIT_STOP;
			ret = finish_pending_io(v, e, &v->stop_requested);
			break;
		}
		v->runs++;
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				atomic_store(&v->kick, false);
				v->exits_interrupted++;
				e->kind = VMKIT_VCPU_EXIT_INTERRUPTED;
				break;
			}
			ret = vmkit__err(-errno, "KVM_RUN on vCPU %u: %s", v->index, strerror(errno));
			break;
		}
		if (handle_exit(v, e))
			break;
	}
	atomic_store(&v->thread, (pthread_t)0);
	return ret;
}

/* ---- state ---------------------------------------------------------------- */

static int xioctl(vmkit_vcpu *v, unsigned long req, void *arg, const char *what)
{
	if (!v)
		return vmkit__err(-EINVAL, "NULL vcpu");
	if (!arg)
		return vmkit__err(-EINVAL, "%s: NULL argument", what);
	if (ioctl(v->fd, req, arg) < 0)
		return vmkit__err(-errno, "%s on vCPU %u: %s", what, v->index, strerror(errno));
	return 0;
}

#define SAME_LAYOUT_ACCESSORS(name, type, get, set, kget, kset)                          \
	int vmkit_vcpu_get_##name(vmkit_vcpu *v, type *out)                               \
	{                                                                                 \
		return xioctl(v, kget, out, #kget);                                       \
	}                                                                                 \
	int vmkit_vcpu_set_##name(vmkit_vcpu *v, const type *in)                          \
	{                                                                                 \
		return xioctl(v, kset, (void *)in, #kset);                                \
	}

SAME_LAYOUT_ACCESSORS(regs, vmkit_regs, get, set, KVM_GET_REGS, KVM_SET_REGS)
SAME_LAYOUT_ACCESSORS(sregs, vmkit_sregs, get, set, KVM_GET_SREGS, KVM_SET_SREGS)
SAME_LAYOUT_ACCESSORS(fpu, vmkit_fpu, get, set, KVM_GET_FPU, KVM_SET_FPU)
SAME_LAYOUT_ACCESSORS(lapic, vmkit_lapic, get, set, KVM_GET_LAPIC, KVM_SET_LAPIC)
SAME_LAYOUT_ACCESSORS(xsave, vmkit_xsave, get, set, KVM_GET_XSAVE, KVM_SET_XSAVE)

#define MSR_BATCH 64

static int msr_io(vmkit_vcpu *v, vmkit_msr *msrs, size_t n, bool write)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e[MSR_BATCH]; } b;
	size_t done = 0;

	if (!v || (!msrs && n))
		return vmkit__err(-EINVAL, "vmkit_vcpu_%s_msrs: bad arguments", write ? "set" : "get");
	while (done < n) {
		size_t k = n - done < MSR_BATCH ? n - done : MSR_BATCH;
		int r;

		memset(&b, 0, sizeof(b));
		b.h.nmsrs = (uint32_t)k;
		for (size_t i = 0; i < k; i++) {
			b.e[i].index = msrs[done + i].index;
			b.e[i].data = msrs[done + i].data;
		}
		r = ioctl(v->fd, write ? KVM_SET_MSRS : KVM_GET_MSRS, &b);
		if (r < 0)
			return vmkit__err(-errno, "KVM_%s_MSRS: %s", write ? "SET" : "GET",
					  strerror(errno));
		if (!write)
			for (int i = 0; i < r; i++)
				msrs[done + (size_t)i].data = b.e[i].data;
		done += (size_t)r;
		if ((size_t)r < k)
			break; /* the MSR at index done was refused */
	}
	return (int)done;
}

int vmkit_vcpu_get_msrs(vmkit_vcpu *v, vmkit_msr *msrs, size_t n)
{
	return msr_io(v, msrs, n, false);
}

int vmkit_vcpu_set_msrs(vmkit_vcpu *v, const vmkit_msr *msrs, size_t n)
{
	return msr_io(v, (vmkit_msr *)msrs, n, true);
}

int vmkit_vcpu_state_msr_list(vmkit_vcpu *v, uint32_t *indices, size_t max)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	size_t count = 0;

	if (!v || (!indices && max))
		return vmkit__err(-EINVAL, "vmkit_vcpu_state_msr_list: bad arguments");
	if (ioctl(v->vm->host->fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return vmkit__err(-errno, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	if (!list)
		return vmkit__err(-ENOMEM, "out of memory");
	list->nmsrs = probe.nmsrs;
	if (ioctl(v->vm->host->fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		int ret = vmkit__err(-errno, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		free(list);
		return ret;
	}
	for (uint32_t i = 0; i < list->nmsrs; i++) {
		vmkit_msr m = { .index = list->indices[i] };
		if (msr_io(v, &m, 1, false) != 1)
			continue; /* listed by KVM but not readable on this vCPU */
		if (count < max)
			indices[count] = m.index;
		count++;
	}
	free(list);
	vmkit__clear_error();
	return (int)count;
}

int vmkit_vcpu_get_events(vmkit_vcpu *v, vmkit_vcpu_events *out)
{
	struct kvm_vcpu_events k;
	int r;

	if (!out)
		return vmkit__err(-EINVAL, "NULL events");
	memset(&k, 0, sizeof(k));
	r = xioctl(v, KVM_GET_VCPU_EVENTS, &k, "KVM_GET_VCPU_EVENTS");
	if (r < 0)
		return r;
	memset(out, 0, sizeof(*out));
	out->exception_injected = k.exception.injected;
	out->exception_nr = k.exception.nr;
	out->exception_has_error_code = k.exception.has_error_code;
	out->exception_pending = k.exception.pending;
	out->exception_error_code = k.exception.error_code;
	out->interrupt_injected = k.interrupt.injected;
	out->interrupt_nr = k.interrupt.nr;
	out->interrupt_soft = k.interrupt.soft;
	out->interrupt_shadow = k.interrupt.shadow;
	out->nmi_injected = k.nmi.injected;
	out->nmi_pending = k.nmi.pending;
	out->nmi_masked = k.nmi.masked;
	out->sipi_vector = k.sipi_vector;
	out->flags = k.flags;
	out->smi_smm = k.smi.smm;
	out->smi_pending = k.smi.pending;
	out->smi_inside_nmi = k.smi.smm_inside_nmi;
	out->smi_latched_init = k.smi.latched_init;
	out->triple_fault_pending = k.triple_fault.pending;
	out->exception_has_payload = k.exception_has_payload;
	out->exception_payload = k.exception_payload;
	return 0;
}

int vmkit_vcpu_set_events(vmkit_vcpu *v, const vmkit_vcpu_events *in)
{
	struct kvm_vcpu_events k;

	if (!in)
		return vmkit__err(-EINVAL, "NULL events");
	memset(&k, 0, sizeof(k));
	k.exception.injected = in->exception_injected;
	k.exception.nr = in->exception_nr;
	k.exception.has_error_code = in->exception_has_error_code;
	k.exception.pending = in->exception_pending;
	k.exception.error_code = in->exception_error_code;
	k.interrupt.injected = in->interrupt_injected;
	k.interrupt.nr = in->interrupt_nr;
	k.interrupt.soft = in->interrupt_soft;
	k.interrupt.shadow = in->interrupt_shadow;
	k.nmi.injected = in->nmi_injected;
	k.nmi.pending = in->nmi_pending;
	k.nmi.masked = in->nmi_masked;
	k.sipi_vector = in->sipi_vector;
	k.flags = in->flags;
	k.smi.smm = in->smi_smm;
	k.smi.pending = in->smi_pending;
	k.smi.smm_inside_nmi = in->smi_inside_nmi;
	k.smi.latched_init = in->smi_latched_init;
	k.triple_fault.pending = in->triple_fault_pending;
	k.exception_has_payload = in->exception_has_payload;
	k.exception_payload = in->exception_payload;
	return xioctl(v, KVM_SET_VCPU_EVENTS, &k, "KVM_SET_VCPU_EVENTS");
}

int vmkit_vcpu_get_mp_state(vmkit_vcpu *v, uint32_t *state)
{
	struct kvm_mp_state mp;
	int r;

	if (!state)
		return vmkit__err(-EINVAL, "NULL state");
	r = xioctl(v, KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE");
	if (r == 0)
		*state = mp.mp_state;
	return r;
}

int vmkit_vcpu_set_mp_state(vmkit_vcpu *v, uint32_t state)
{
	struct kvm_mp_state mp = { .mp_state = state };

	if (state > VMKIT_MP_SIPI_RECEIVED)
		return vmkit__err(-EINVAL, "bad MP state %u", state);
	return xioctl(v, KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
}

int vmkit_vcpu_get_xcrs(vmkit_vcpu *v, vmkit_xcrs *out)
{
	struct kvm_xcrs k;
	int r;

	if (!out)
		return vmkit__err(-EINVAL, "NULL xcrs");
	memset(&k, 0, sizeof(k));
	r = xioctl(v, KVM_GET_XCRS, &k, "KVM_GET_XCRS");
	if (r < 0)
		return r;
	memset(out, 0, sizeof(*out));
	out->nr_xcrs = k.nr_xcrs < 16 ? k.nr_xcrs : 16;
	out->flags = k.flags;
	for (uint32_t i = 0; i < out->nr_xcrs; i++) {
		out->xcrs[i].xcr = k.xcrs[i].xcr;
		out->xcrs[i].value = k.xcrs[i].value;
	}
	return 0;
}

int vmkit_vcpu_set_xcrs(vmkit_vcpu *v, const vmkit_xcrs *in)
{
	struct kvm_xcrs k;

	if (!in || in->nr_xcrs > 16)
		return vmkit__err(-EINVAL, "bad xcrs");
	memset(&k, 0, sizeof(k));
	k.nr_xcrs = in->nr_xcrs;
	k.flags = in->flags;
	for (uint32_t i = 0; i < in->nr_xcrs; i++) {
		k.xcrs[i].xcr = in->xcrs[i].xcr;
		k.xcrs[i].value = in->xcrs[i].value;
	}
	return xioctl(v, KVM_SET_XCRS, &k, "KVM_SET_XCRS");
}

int vmkit_vcpu_get_debugregs(vmkit_vcpu *v, vmkit_debugregs *out)
{
	struct kvm_debugregs k;
	int r;

	if (!out)
		return vmkit__err(-EINVAL, "NULL debugregs");
	memset(&k, 0, sizeof(k));
	r = xioctl(v, KVM_GET_DEBUGREGS, &k, "KVM_GET_DEBUGREGS");
	if (r < 0)
		return r;
	memcpy(out->db, k.db, sizeof(out->db));
	out->dr6 = k.dr6;
	out->dr7 = k.dr7;
	out->flags = k.flags;
	return 0;
}

int vmkit_vcpu_set_debugregs(vmkit_vcpu *v, const vmkit_debugregs *in)
{
	struct kvm_debugregs k;

	if (!in)
		return vmkit__err(-EINVAL, "NULL debugregs");
	memset(&k, 0, sizeof(k));
	memcpy(k.db, in->db, sizeof(k.db));
	k.dr6 = in->dr6;
	k.dr7 = in->dr7;
	k.flags = in->flags;
	return xioctl(v, KVM_SET_DEBUGREGS, &k, "KVM_SET_DEBUGREGS");
}

int vmkit_vcpu_set_cpuid(vmkit_vcpu *v, const vmkit_cpuid_entry *entries, size_t n)
{
	struct kvm_cpuid2 *c;
	int r;

	if (!v || !entries || n == 0 || n > 256)
		return vmkit__err(-EINVAL, "vmkit_vcpu_set_cpuid: bad arguments");
	c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
	if (!c)
		return vmkit__err(-ENOMEM, "out of memory");
	c->nent = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		c->entries[i].function = entries[i].function;
		c->entries[i].index = entries[i].index;
		c->entries[i].flags = (entries[i].flags & VMKIT_CPUID_FLAG_SIGNIFICANT_INDEX) ?
				      KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
		c->entries[i].eax = entries[i].eax;
		c->entries[i].ebx = entries[i].ebx;
		c->entries[i].ecx = entries[i].ecx;
		c->entries[i].edx = entries[i].edx;
	}
	r = xioctl(v, KVM_SET_CPUID2, c, "KVM_SET_CPUID2");
	free(c);
	return r;
}

int vmkit_vcpu_get_stats(vmkit_vcpu *v, vmkit_vcpu_stats *st)
{
	if (!v || !st || st->size < sizeof(*st))
		return vmkit__err(-EINVAL, "vmkit_vcpu_get_stats: bad arguments");
	st->runs = v->runs;
	st->exits_io = v->exits_io;
	st->exits_mmio = v->exits_mmio;
	st->exits_hlt = v->exits_hlt;
	st->exits_interrupted = v->exits_interrupted;
	st->exits_other = v->exits_other;
	return 0;
}
