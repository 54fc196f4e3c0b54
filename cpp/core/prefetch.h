// Software prefetch that the optimizer keeps, for the drivers' requests (not the kernels' loops).
#pragma once

namespace rmsprop_ext {

// Asks for the cache line holding `address` (any address: a prefetch never faults).
//
// GCC counts __builtin_prefetch as free of side effects, so its IPA pass finds a function that
// only prefetches "const" and deletes the calls to it that it has not inlined. The sparse driver's
// requests for the rows ahead vanished that way (GCC 12, -O3: prefetch_row was found const, and no
// request for the table was left in the object); kept, the sparse step took 2.2 ms instead of
// 3.2-4.2 on the bench's table (docs/sparse.md). The empty volatile asm naming the address is a
// side effect the compiler must keep; it emits no instruction.
//
// The one-pass loops' requests ahead (kernel.cpp's prefetch_elements) use it too: which of their
// builtins GCC deleted followed its inlining, so a step's speed changed from build to build; kept,
// they made no form slower on a Zen 5 core beyond the noise. The requests for a whole stretch
// (prefetch_lines) keep the builtin: this function in every request's place made the 16-bit
// forms 1.2-1.7x slower at 16M elements on a Zen 4 core (the asm alone 1.1-1.7x), which runs no
// one-pass loop.
inline void prefetch(const void* address) {
  __builtin_prefetch(address);
  asm volatile("" : : "r"(address));
}

}  // namespace rmsprop_ext
