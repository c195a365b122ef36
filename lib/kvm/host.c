/* SPDX-License-Identifier: MIT */
/* The hypervisor device: open, version, capabilities, supported CPUID. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "internal.h"

#define CPUID_MAX_ENTRIES 256

int vmkit_host_open(const char *path, uint32_t flags, vmkit_host **out)
{
	vmkit_host *h;
	int fd, ret;

	if (!out || flags)
		return vmkit__err(-EINVAL, "vmkit_host_open: bad arguments");
	*out = NULL;
	if (!path)
		path = "/dev/kvm";
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		if (ret == -ENOENT)
			return vmkit__err(ret, "%s: no such device (is KVM available on this host?)", path);
		if (ret == -EACCES || ret == -EPERM)
			return vmkit__err(ret, "%s: permission denied (add the user to the kvm group)", path);
		return vmkit__err(ret, "%s: %s", path, strerror(-ret));
	}
	ret = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (ret != KVM_API_VERSION) {
		close(fd);
		return vmkit__err(-ENODEV, "%s: not a KVM device with API version %d", path,
				  KVM_API_VERSION);
	}
	static const struct { int cap; const char *name; } need[] = {
		{ KVM_CAP_USER_MEMORY, "user memory" },
		{ KVM_CAP_IRQCHIP, "in-kernel irqchip" },
		{ KVM_CAP_IOEVENTFD, "ioeventfd" },
		{ KVM_CAP_IRQFD, "irqfd" },
		{ KVM_CAP_EXT_CPUID, "extended CPUID" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(need); i++) {
		if (ioctl(fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0) {
			close(fd);
			return vmkit__err(-ENODEV, "%s: KVM lacks %s", path, need[i].name);
		}
	}
	h = calloc(1, sizeof(*h));
	if (!h || !(h->path = strdup(path))) {
		free(h);
		close(fd);
		return vmkit__err(-ENOMEM, "out of memory");
	}
	h->fd = fd;
	pthread_mutex_init(&h->lock, NULL);
	h->api_version = KVM_API_VERSION;
	h->vcpu_mmap_size = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (h->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		vmkit_host_free(h);
		return vmkit__err(-ENODEV, "%s: bad vCPU mmap size", path);
	}
	*out = h;
	return 0;
}

void vmkit_host_free(vmkit_host *host)
{
	if (!host)
		return;
	close(host->fd);
	pthread_mutex_destroy(&host->lock);
	free(host->supported_cpuid);
	free(host->path);
	free(host);
}

void vmkit_host_set_log(vmkit_host *host, vmkit_log_fn fn, void *userdata,
			vmkit_log_level max_level)
{
	if (!host)
		return;
	host->log = (struct vmkit_logger){ fn, userdata, max_level };
}

int vmkit_host_api_version(vmkit_host *host)
{
	if (!host)
		return vmkit__err(-EINVAL, "NULL host");
	return host->api_version;
}

int vmkit_host_check_capability(vmkit_host *host, uint32_t cap)
{
	int r;

	if (!host)
		return vmkit__err(-EINVAL, "NULL host");
	r = ioctl(host->fd, KVM_CHECK_EXTENSION, (unsigned long)cap);
	if (r < 0)
		return vmkit__err(-errno, "KVM_CHECK_EXTENSION %u: %s", cap, strerror(errno));
	return r;
}

/* Cached: the answer does not change for the life of the fd. */
int vmkit__host_cpuid(vmkit_host *host, const struct kvm_cpuid2 **out)
{
	struct kvm_cpuid2 *c;
	int ret = 0;

	pthread_mutex_lock(&host->lock);
	if (!host->supported_cpuid) {
		c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(c->entries[0]));
		if (!c) {
			pthread_mutex_unlock(&host->lock);
			return vmkit__err(-ENOMEM, "out of memory");
		}
		c->nent = CPUID_MAX_ENTRIES;
		if (ioctl(host->fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
			ret = vmkit__err(-errno, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
			free(c);
		} else {
			host->supported_cpuid = c;
		}
	}
	*out = host->supported_cpuid;
	pthread_mutex_unlock(&host->lock);
	return ret;
}

int vmkit_host_supported_cpuid(vmkit_host *host, vmkit_cpuid_entry *entries, size_t max)
{
	const struct kvm_cpuid2 *c;
	int ret;

	if (!host || (!entries && max))
		return vmkit__err(-EINVAL, "vmkit_host_supported_cpuid: bad arguments");
	ret = vmkit__host_cpuid(host, &c);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < c->nent && i < max; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];
		entries[i] = (vmkit_cpuid_entry){
			.function = e->function, .index = e->index,
			.flags = (e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ?
				 VMKIT_CPUID_FLAG_SIGNIFICANT_INDEX : 0,
			.eax = e->eax, .ebx = e->ebx, .ecx = e->ecx, .edx = e->edx,
		};
	}
	return (int)c->nent;
}

const char *vmkit_host_path(const vmkit_host *host)
{
	return host ? host->path : NULL;
}
