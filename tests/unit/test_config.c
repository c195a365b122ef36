/* SPDX-License-Identifier: MIT */
/* Machine configuration: setters' validation and the JSON form's errors,
 * which users see as one line each. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "machine/machine_internal.h"

static int parse(const char *json, vmkit_machine_config **out)
{
	return vmkit_machine_config_from_json(json, strlen(json), out);
}

static void expect_error(const char *json, const char *fragment)
{
	vmkit_machine_config *c = (void *)0x1;

	cr_assert_lt(parse(json, &c), 0, "accepted: %s", json);
	cr_assert_null(c);
	cr_assert(strstr(vmkit_last_error(), fragment), "error for %s was '%s', wanted '%s'", json,
		  vmkit_last_error(), fragment);
	cr_assert_null(strchr(vmkit_last_error(), '\n'), "one line");
}

Test(config, full_document)
{
	vmkit_machine_config *c;
	const char *json =
		"{ \"cpus\": 4, \"memory_mib\": 1024, \"kernel\": \"/k\",\n"
		"  \"initrd\": [\"/a\", \"/b\"], \"cmdline\": \"console=ttyS0\",\n"
		"  \"acpi\": false, \"unhandled\": \"strict\", \"exit_port\": \"0x501\",\n"
		"  \"hugepages\": false,\n"
		"  \"cpu\": { \"vendor\": \"GenuineIntel\", \"mask\": [\"avx2\", \"x2apic\"] } }\n";

	cr_assert_eq(parse(json, &c), 0, "%s", vmkit_last_error());
	cr_assert_eq(c->ncpus, 4);
	cr_assert_eq(c->memory, 1024ull << 20);
	cr_assert_str_eq(c->kernel, "/k");
	cr_assert_eq(c->n_initrds, 2);
	cr_assert_str_eq(c->initrds[1], "/b");
	cr_assert_str_eq(c->cmdline, "console=ttyS0");
	cr_assert_not(c->acpi);
	cr_assert_not(c->hugepages);
	cr_assert(c->hugepages_set);
	cr_assert_eq(c->unhandled_policy, VMKIT_UNHANDLED_STRICT);
	cr_assert_eq(c->exit_port, 0x501);
	cr_assert_str_eq(c->cpu.vendor, "GenuineIntel");
	cr_assert_eq(c->cpu.n_masked, 2);
	vmkit_machine_config_free(c);
}

Test(config, defaults)
{
	vmkit_machine_config *c;

	cr_assert_eq(parse("{}", &c), 0);
	cr_assert_eq(c->ncpus, 1);
	cr_assert_eq(c->memory, 256ull << 20);
	cr_assert(c->acpi);
	cr_assert_not(c->hugepages_set, "unset: the machine decides (off with a balloon)");
	cr_assert(c->exit_port_enabled);
	cr_assert_eq(c->exit_port, 0xf4);
	vmkit_machine_config_free(c);
}

Test(config, flat_binary)
{
	vmkit_machine_config *c;

	cr_assert_eq(parse("{\"flat\": {\"load\": \"0x7c00\", \"mode\": \"real\"}}", &c), 0,
		     "%s", vmkit_last_error());
	cr_assert_eq(c->kernel_format, VMKIT_KERNEL_FLAT);
	cr_assert_eq(c->flat_load, 0x7c00);
	cr_assert_eq(c->flat_entry, 0x7c00, "entry defaults to the load address");
	cr_assert_eq(c->flat_mode, VMKIT_CPU_REAL);
	vmkit_machine_config_free(c);
}

Test(config, malformed_json_names_the_line)
{
	expect_error("{\n \"cpus\": 2,\n \"memory_mib\": }", "malformed JSON at line 3");
	expect_error("{\"cpus\": 2", "malformed JSON");
	expect_error("", "malformed JSON");
	expect_error("{} {}", "unexpected data after the document");
	expect_error("[1, 2]", "must be a JSON object");
}

Test(config, wrong_types_and_unknown_keys_name_the_key)
{
	expect_error("{\"cpus\": \"many\"}", "\"cpus\"");
	expect_error("{\"cpus\": 1.5}", "\"cpus\" must be an integer");
	expect_error("{\"kernel\": 3}", "\"kernel\" must be a string");
	expect_error("{\"acpi\": \"yes\"}", "\"acpi\" must be true or false");
	expect_error("{\"hugepages\": 1}", "\"hugepages\" must be true or false");
	expect_error("{\"kernal\": \"/k\"}", "unknown key \"kernal\"");
	expect_error("{\"cpu\": {\"vendr\": \"x\"}}", "unknown key \"cpu.vendr\"");
	expect_error("{\"kernel_format\": \"elf\"}", "unknown value 'elf'");
	expect_error("{\"initrd\": [\"/a\", 7]}", "\"initrd[]\" must be a string");
}

Test(config, out_of_range_values)
{
	expect_error("{\"cpus\": 0}", "cpus: 0 is out of range");
	expect_error("{\"cpus\": 65}", "out of range");
	expect_error("{\"cpus\": -1}", "out of range");
	expect_error("{\"memory_mib\": 1}", "too small");
	expect_error("{\"memory_mib\": 99999999999}", "too large");
	expect_error("{\"cpu\": {\"vendor\": \"Intel\"}}", "12 characters");
	expect_error("{\"cpu\": {\"mask\": [\"warpdrive\"]}}", "unknown CPU feature 'warpdrive'");
}

Test(config, setters_validate)
{
	vmkit_machine_config *c;
	char big[0x10001];

	cr_assert_eq(vmkit_machine_config_new(&c), 0);
	cr_assert_eq(vmkit_machine_config_set_memory(c, (1ull << 20) + 1), -EINVAL);
	cr_assert_eq(vmkit_machine_config_set_memory(c, 64ull << 20), 0);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	cr_assert_eq(vmkit_machine_config_set_cmdline(c, big), -E2BIG);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(vmkit_machine_config_add_initrd(c, "/x"), 0);
	cr_assert_eq(vmkit_machine_config_add_initrd(c, "/x"), -E2BIG);
	cr_assert_eq(vmkit_machine_config_set_exit_port(c, true, 0xfffe), -EINVAL);
	vmkit_machine_config_free(c);
	vmkit_machine_config_free(NULL);
}

Test(config, load_file_errors)
{
	vmkit_machine_config *c;
	char path[] = "/tmp/vmkit-config-XXXXXX";
	int fd = mkstemp(path);

	cr_assert_eq(vmkit_machine_config_load("/nonexistent/vm.json", &c), -ENOENT);
	cr_assert(strstr(vmkit_last_error(), "/nonexistent/vm.json"));
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "{\"cpus\": }", 10), 10);
	close(fd);
	cr_assert_eq(vmkit_machine_config_load(path, &c), -EINVAL);
	cr_assert(strstr(vmkit_last_error(), path), "%s", vmkit_last_error());
	cr_assert(strstr(vmkit_last_error(), "line 1"), "%s", vmkit_last_error());
	unlink(path);
}

Test(config, virtio_devices_json)
{
	vmkit_machine_config *c, *copy;
	const char *json =
		"{ \"disks\": [ \"/img/a.raw\",\n"
		"    { \"path\": \"/img/b.raw\", \"readonly\": true, \"serial\": \"SER-1\",\n"
		"      \"transport\": \"mmio\", \"block_size\": 4096 } ],\n"
		"  \"console\": { \"transport\": \"mmio\" }, \"rng\": { \"rate\": 4096 },\n"
		"  \"balloon\": true, \"virtio_mmio_cmdline\": true }\n";

	cr_assert_eq(parse(json, &c), 0, "%s", vmkit_last_error());
	cr_assert_eq(c->n_disks, 2);
	cr_assert_str_eq(c->disks[0].path, "/img/a.raw");
	cr_assert_not(c->disks[0].readonly);
	cr_assert_eq(c->disks[0].transport, VMKIT_VIRTIO_PCI);
	cr_assert_eq(c->disks[0].block_size, 512);
	cr_assert_str_eq(c->disks[1].path, "/img/b.raw");
	cr_assert(c->disks[1].readonly);
	cr_assert_str_eq(c->disks[1].serial, "SER-1");
	cr_assert_eq(c->disks[1].transport, VMKIT_VIRTIO_MMIO);
	cr_assert_eq(c->disks[1].block_size, 4096);
	cr_assert(c->console);
	cr_assert_eq(c->console_transport, VMKIT_VIRTIO_MMIO);
	cr_assert(c->rng);
	cr_assert_eq(c->rng_rate, 4096);
	cr_assert_eq(c->rng_transport, VMKIT_VIRTIO_PCI);
	cr_assert(c->balloon);
	cr_assert(c->mmio_cmdline);

	/* the machine keeps a deep copy */
	copy = calloc(1, sizeof(*copy));
	cr_assert_eq(vmkit__machine_config_copy(copy, c), 0);
	vmkit_machine_config_free(c);
	cr_assert_str_eq(copy->disks[1].serial, "SER-1");
	cr_assert_str_eq(copy->disks[0].path, "/img/a.raw");
	vmkit_machine_config_free(copy);
}

Test(config, virtio_devices_errors)
{
	expect_error("{\"disks\": \"/a\"}", "\"disks\" must be an array");
	expect_error("{\"disks\": [{\"readonly\": true}]}", "needs a \"path\"");
	expect_error("{\"disks\": [{\"path\": \"/a\", \"transport\": \"usb\"}]}",
		     "\"disks[].transport\": unknown value 'usb'");
	expect_error("{\"disks\": [{\"path\": \"/a\", \"size\": 1}]}", "unknown key \"disks[].size\"");
	expect_error("{\"disks\": [{\"path\": \"/a\", \"serial\": \"123456789012345678901\"}]}",
		     "longer than 20 bytes");
	expect_error("{\"disks\": [{\"path\": \"/a\", \"block_size\": 1000}]}", "block size 1000");
	expect_error("{\"console\": 1}", "\"console\" must be true, false or an object");
	expect_error("{\"rng\": {\"speed\": 1}}", "unknown key \"rng.speed\"");
	expect_error("{\"balloon\": {\"rate\": 1}}", "unknown key \"balloon.rate\"");
}

Test(config, virtio_setters_validate)
{
	vmkit_machine_config *c;
	vmkit_disk_config d = VMKIT_DISK_CONFIG_INIT;

	cr_assert_eq(vmkit_machine_config_new(&c), 0);
	cr_assert_lt(vmkit_machine_config_add_disk(c, &d), 0, "no path");
	d.path = "/a";
	d.transport = 7;
	cr_assert_lt(vmkit_machine_config_add_disk(c, &d), 0, "bad transport");
	d.transport = VMKIT_VIRTIO_PCI;
	for (int i = 0; i < MACHINE_MAX_DISKS; i++)
		cr_assert_eq(vmkit_machine_config_add_disk(c, &d), 0);
	cr_assert_eq(vmkit_machine_config_add_disk(c, &d), -E2BIG);
	cr_assert_lt(vmkit_machine_config_set_rng(c, 9, 0), 0);
	cr_assert_lt(vmkit_machine_config_add_console_port(c, "", -1, -1), 0);
	cr_assert_eq(vmkit_machine_config_add_console_port(c, "org.vmkit.log", -1, 1), 0);
	cr_assert(c->console, "a named port brings the console device");
	cr_assert_lt(vmkit_machine_config_add_virtio(c, NULL, NULL, VMKIT_VIRTIO_PCI), 0);
	vmkit_machine_config_free(c);
}

Test(config, net_and_vsock_json)
{
	vmkit_machine_config *c, *copy;
	const char *json =
		"{ \"net\": [ { \"tap\": \"vmtap0\", \"mac\": \"52:54:00:ab:CD:0f\", \"transport\": \"mmio\",\n"
		"               \"rx_limit\": { \"bytes_per_sec\": 1000000, \"frames_burst\": 7 } },\n"
		"             { \"fd\": 5, \"tx_limit\": { \"frames_per_sec\": 100 } },\n"
		"             { \"stream\": \"/run/passt.sock\" }, { \"dgram\": \"/tmp/sw.sock\" } ],\n"
		"  \"vsock\": { \"cid\": 42, \"path\": \"/tmp/v.sock\", \"transport\": \"mmio\" } }";

	cr_assert_eq(parse(json, &c), 0, "%s", vmkit_last_error());
	cr_assert_eq(c->n_nets, 4);
	cr_assert_eq(c->nets[0].backend, VMKIT_NET_TAP);
	cr_assert_str_eq(c->nets[0].ifname, "vmtap0");
	cr_assert_eq(c->nets[0].fd, -1);
	cr_assert(c->nets[0].mac_set);
	cr_assert_arr_eq(c->nets[0].mac, ((uint8_t[]){ 0x52, 0x54, 0, 0xab, 0xcd, 0x0f }), 6);
	cr_assert_eq(c->nets[0].transport, VMKIT_VIRTIO_MMIO);
	cr_assert_eq(c->nets[0].rx.bytes_per_sec, 1000000);
	cr_assert_eq(c->nets[0].rx.frames_burst, 7);
	cr_assert_eq(c->nets[0].tx.bytes_per_sec, 0);
	cr_assert_eq(c->nets[1].backend, VMKIT_NET_TAP);
	cr_assert_eq(c->nets[1].fd, 5);
	cr_assert_null(c->nets[1].ifname);
	cr_assert_eq(c->nets[1].tx.frames_per_sec, 100);
	cr_assert_not(c->nets[1].mac_set);
	cr_assert_eq(c->nets[1].transport, VMKIT_VIRTIO_PCI);
	cr_assert_eq(c->nets[2].backend, VMKIT_NET_STREAM);
	cr_assert_str_eq(c->nets[2].path, "/run/passt.sock");
	cr_assert_eq(c->nets[3].backend, VMKIT_NET_DGRAM);
	cr_assert(c->vsock);
	cr_assert_eq(c->vsock_cid, 42);
	cr_assert_str_eq(c->vsock_path, "/tmp/v.sock");
	cr_assert_eq(c->vsock_transport, VMKIT_VIRTIO_MMIO);
	/* The machine keeps its own copy of every string. */
	copy = calloc(1, sizeof(*copy));
	cr_assert_eq(vmkit__machine_config_copy(copy, c), 0);
	vmkit_machine_config_free(c);
	cr_assert_str_eq(copy->nets[2].path, "/run/passt.sock");
	cr_assert_str_eq(copy->nets[0].ifname, "vmtap0");
	cr_assert_str_eq(copy->vsock_path, "/tmp/v.sock");
	vmkit_machine_config_free(copy);
}

Test(config, net_and_vsock_errors)
{
	expect_error("{ \"net\": {} }", "\"net\"");
	expect_error("{ \"net\": [ {} ] }", "exactly one of");
	expect_error("{ \"net\": [ { \"tap\": \"a\", \"dgram\": \"/b\" } ] }", "exactly one of");
	expect_error("{ \"net\": [ { \"tap\": \"a\", \"mac\": \"52:54:00:12:34\" } ] }", "net[].mac");
	expect_error("{ \"net\": [ { \"tap\": \"a\", \"mac\": \"52:54:00:12:34:5g\" } ] }", "net[].mac");
	expect_error("{ \"net\": [ { \"tap\": \"a\", \"mac\": \"01:00:5e:00:00:01\" } ] }", "multicast");
	expect_error("{ \"net\": [ { \"tap\": \"a\", \"mac\": \"00:00:00:00:00:00\" } ] }", "not an address");
	expect_error("{ \"net\": [ { \"tap\": \"a-very-long-tap-name\" } ] }", "longer than 15");
	expect_error("{ \"net\": [ { \"tap\": \"a\", \"speed\": 1 } ] }", "net[].speed");
	expect_error("{ \"net\": [ { \"tap\": \"a\", \"rx_limit\": { \"bps\": 1 } } ] }", "net[].rx_limit.bps");
	expect_error("{ \"net\": [ { \"tap\": \"a\", \"transport\": \"usb\" } ] }", "usb");
	expect_error("{ \"net\": [ { \"fd\": -3 } ] }", "net[].fd");
	expect_error("{ \"vsock\": { \"cid\": 2, \"path\": \"/v\" } }", "CID 2");
	expect_error("{ \"vsock\": { \"cid\": 3 } }", "needs");
	expect_error("{ \"vsock\": { \"cid\": 3, \"path\": \"/v\", \"port\": 1 } }", "vsock.port");
}

Test(config, net_and_vsock_setters_validate)
{
	vmkit_machine_config *c;
	vmkit_net_config n = VMKIT_NET_CONFIG_INIT;
	vmkit_vsock_config v = VMKIT_VSOCK_CONFIG_INIT;
	char path[200];

	cr_assert_eq(vmkit_machine_config_new(&c), 0);
	cr_assert_lt(vmkit_machine_config_add_net(c, NULL), 0);
	cr_assert_lt(vmkit_machine_config_add_net(c, &n), 0, "a tap needs a name or fd");
	cr_assert(strstr(vmkit_last_error(), "name or an fd"));
	n.backend = VMKIT_NET_CALLBACK;
	cr_assert_lt(vmkit_machine_config_add_net(c, &n), 0);
	cr_assert(strstr(vmkit_last_error(), "tx_fn"));
	n.backend = VMKIT_NET_STREAM;
	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	n.path = path;
	cr_assert_lt(vmkit_machine_config_add_net(c, &n), 0);
	cr_assert(strstr(vmkit_last_error(), "longer than"));
	n.backend = 99;
	cr_assert_lt(vmkit_machine_config_add_net(c, &n), 0);
	n = (vmkit_net_config)VMKIT_NET_CONFIG_INIT;
	n.ifname = "t0";
	for (int i = 0; i < VMKIT_NET_MAX; i++)
		cr_assert_eq(vmkit_machine_config_add_net(c, &n), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_config_add_net(c, &n), -E2BIG);
	cr_assert_lt(vmkit_machine_config_set_vsock(c, &v), 0);
	v.guest_cid = 0x100000000ull;
	v.uds_path = "/tmp/v";
	cr_assert_lt(vmkit_machine_config_set_vsock(c, &v), 0);
	v.guest_cid = 3;
	v.uds_path = path;
	cr_assert_lt(vmkit_machine_config_set_vsock(c, &v), 0, "no room for _PORT");
	v.uds_path = "/tmp/v";
	cr_assert_eq(vmkit_machine_config_set_vsock(c, &v), 0, "%s", vmkit_last_error());
	vmkit_machine_config_free(c);
}

Test(config, option_roms)
{
	vmkit_machine_config *c;

	cr_assert_eq(parse("{\"firmware\": \"/fw/bios.bin\", \"option_roms\": "
			   "[\"/usr/share/qemu/linuxboot_dma.bin\", \"ipxe.rom\"]}", &c), 0, "%s",
		     vmkit_last_error());
	cr_assert_eq(c->n_option_roms, 2);
	cr_assert_str_eq(c->option_roms[0], "/usr/share/qemu/linuxboot_dma.bin");
	cr_assert_str_eq(c->option_roms[1], "ipxe.rom");
	/* another ROM of the same file name would be the same fw_cfg file */
	cr_assert_eq(vmkit_machine_config_add_option_rom(c, "/other/ipxe.rom"), -EEXIST);
	cr_assert(strstr(vmkit_last_error(), "ipxe.rom"), "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_config_add_option_rom(c, "/dir/"), -EINVAL);
	cr_assert_eq(vmkit_machine_config_add_option_rom(c, ""), -EINVAL);
	cr_assert_eq(vmkit_machine_config_add_option_rom(
			     c, "/x/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.rom"), -EINVAL);
	for (int i = 2; i < 8; i++) {
		char name[32];
		snprintf(name, sizeof(name), "rom%d.bin", i);
		cr_assert_eq(vmkit_machine_config_add_option_rom(c, name), 0);
	}
	cr_assert_eq(vmkit_machine_config_add_option_rom(c, "rom9.bin"), -E2BIG);
	vmkit_machine_config_free(c);
	expect_error("{\"option_roms\": \"a.rom\"}", "\"option_roms\" must be an array of paths");
	expect_error("{\"option_roms\": [1]}", "option_roms[]");
}
