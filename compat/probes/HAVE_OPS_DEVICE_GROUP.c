// SPDX-License-Identifier: GPL-2.0
#include <rdma/ib_verbs.h>

static const struct attribute_group probe_group;

const struct ib_device_ops probe_ops = { .device_group = &probe_group };
