/* glassbox io: tokenizers and checkpoint files (safetensors, Hugging Face
 * model directories). Depends on the tensor and nn layers only.
 *
 * Usage (compiled as a test, tests/test_header_examples.c): see each section.
 */
#ifndef GB_IO_H
#define GB_IO_H

#include "../tensor/tensor.h"

/* ==== tokenizers ========================================================= */

/* ==== end tokenizers ===================================================== */

/* ==== safetensors ======================================================== */

/* ==== end safetensors ==================================================== */

#endif
