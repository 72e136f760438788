/* glassbox: look inside neural networks on a CPU.
 * The one header users include; each layer documents itself in its own. */
#ifndef GLASSBOX_H
#define GLASSBOX_H

#include "tensor/tensor.h"
#include "autograd/autograd.h"
#include "nn/nn.h"
#include "hooks/hooks.h"
#include "trace/trace.h"
#include "io/io.h"
#include "lm/lm.h"
#include "session/session.h"
#include "serve/serve.h"

#endif
