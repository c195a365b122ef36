#include <stdio.h>
#include <vmkit/vmkit.h>

/* Boot a kernel with serial on stdin/stdout; print how the guest ended. */
int main(int argc, char **argv)
{
	vmkit_host *host = NULL;
	vmkit_machine_config *cfg = NULL;
	vmkit_machine *vm = NULL;
	vmkit_machine_exit ex = { .size = sizeof(ex) };

	if (argc < 2) {
		fprintf(stderr, "usage: %s KERNEL [CMDLINE]\n", argv[0]);
		return 2;
	}
	if (vmkit_host_open(NULL, 0, &host) < 0 || vmkit_machine_config_new(&cfg) < 0 ||
	    vmkit_machine_config_set_kernel(cfg, argv[1]) < 0 ||
	    vmkit_machine_config_set_cmdline(cfg, argc > 2 ? argv[2] : "console=ttyS0") < 0 ||
	    vmkit_machine_config_set_serial_fds(cfg, 0, 1) < 0 ||
	    vmkit_machine_new(host, cfg, &vm) < 0 || vmkit_machine_start(vm) < 0 ||
	    vmkit_machine_wait(vm, -1, &ex) < 0) {
		fprintf(stderr, "vmkit: %s\n", vmkit_last_error());
		return 1;
	}
	printf("guest exited: reason %u, status %d\n", ex.reason, ex.status);
	vmkit_machine_free(vm);
	vmkit_machine_config_free(cfg);
	vmkit_host_free(host);
	return 0;
}
