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
// The kernels' vector loops keep plain __builtin_prefetch: GCC drops some of their requests too,
// but this function in their place made the 16-bit forms 1.2-1.7x slower at 16M elements on a
// Zen 4 core (the asm alone 1.1-1.7x: it holds back the scheduling of the loop around it).
inline void prefetch(const void* address) {
  __builtin_prefetch(address);
  asm volatile("" : : "r"(address));
}

}  // namespace rmsprop_ext
