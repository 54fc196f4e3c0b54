// Instruction-set levels: which ones were compiled, which ones the CPU runs, and which one is used.
#pragma once

#include <string>
#include <vector>

namespace rmsprop_ext {

// x86-64 has scalar, avx2 and avx512; aarch64 scalar and neon.
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kNeon = 3 };

const char* isa_name(Isa isa);

// Parses "scalar", "avx2", "avx512" or "neon"; throws std::invalid_argument for anything else.
Isa parse_isa(const std::string& name);

// Levels with a kernel in this build, lowest first.
std::vector<Isa> compiled_isas();

// Levels this CPU and operating system can execute (AVX state enabled in XCR0), lowest first.
std::vector<Isa> cpu_isas();

// Compiled and runnable on this CPU, lowest first.
std::vector<Isa> available_isas();

// The level step() dispatches to. Starts as the highest available level.
Isa active_isa();

// Throws std::runtime_error naming the missing feature when `isa` is not available here.
void set_active_isa(Isa isa);

// Whether the avx512 kernel rounds float32 to bfloat16 with AVX512-BF16's vcvtneps2bf16 (the
// default where the CPU has it) or with integer arithmetic. Both give the same bits; tests switch
// it to cover both. set_bf16_instructions(true) returns false, changing nothing, on a CPU or a
// build without AVX512-BF16.
bool cpu_has_avx512_bf16();
bool bf16_instructions();
bool set_bf16_instructions(bool enabled);

// Whether the CPU's L1 data cache picks ways by the hash of the linear address that zen_l1.h models
// (AMD's Zen to Zen 4, families 17h to 19h, and Hygon's cores built on them): there two lines of
// one set with the same hash evict each other, which decides how the kernels walk their buffers
// (two_pass_blocks in kernel.cpp). A Zen 5 core (1Ah) lost nothing on such layouts
// (benchmarks/utag_collisions.py --scan) and ran faster in one pass, so it is not counted.
bool cpu_has_zen_l1_utags();

// Applies RMSPROP_EXT_ISA when it is set; throws (invalid_argument / runtime_error) when it names
// an unknown level or one this CPU or build lacks.
void apply_isa_from_environment();

}  // namespace rmsprop_ext
