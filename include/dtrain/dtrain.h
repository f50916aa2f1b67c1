/* dtrain: the torch.distributed training stack in C. Include this one header. */
#ifndef DTRAIN_DTRAIN_H
#define DTRAIN_DTRAIN_H

#include <dtrain/util.h>
#include <dtrain/dtype.h>
#include <dtrain/store.h>
#include <dtrain/dist.h>
#include <dtrain/spawn.h>
#include <dtrain/safetensors.h>
#include <dtrain/idx.h>
#include <dtrain/optim.h>
#include <dtrain/sampler.h>
#include <dtrain/crc32c.h>
#include <dtrain/tokens.h>
#include <dtrain/data.h>
#include <dtrain/checkpoint.h>
#include <dtrain/tensor.h>
#include <dtrain/autograd.h>
#include <dtrain/nn.h>
#include <dtrain/ddp.h>

#endif /* DTRAIN_DTRAIN_H */
