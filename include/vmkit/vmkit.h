/* SPDX-License-Identifier: MIT */
/** vmkit/vmkit.h - the whole public API. */
#ifndef VMKIT_VMKIT_H
#define VMKIT_VMKIT_H

#include "vmkit/version.h"
#include "common.h"
#include "host.h"
#include "vm.h"
#include "vcpu.h"
#include "machine.h"
#include "device.h"

#endif
