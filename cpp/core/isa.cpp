// Run-time CPU feature detection and the choice of kernel level.
#include "isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define RMSPROP_EXT_X86 1
#endif

namespace rmsprop_ext {
namespace {

#if RMSPROP_EXT_X86
// XCR0 bits the operating system sets when it saves that register state on context switches;
// without them the instructions fault even when CPUID lists them.
constexpr unsigned kXcr0SseAvx = 0x6;   // XMM and YMM
constexpr unsigned kXcr0Avx512 = 0xe6;  // XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM

unsigned read_xcr0() {
  unsigned eax = 0;
  unsigned edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return eax;
}

struct CpuFeatures {
  bool avx2_fma = false;
  bool avx512f = false;  // with DQ and BW, which every AVX-512 CPU but Xeon Phi has
  bool avx512_bf16 = false;
};

CpuFeatures detect_features() {
  CpuFeatures features;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
    return features;
  }
  const bool osxsave = (ecx & (1u << 27)) != 0;
  const bool avx = (ecx & (1u << 28)) != 0;
  const bool fma = (ecx & (1u << 12)) != 0;
  // F16C: the float16 conversions of both vector kernels (every CPU with AVX2 has it in practice).
  const bool f16c = (ecx & (1u << 29)) != 0;
  if (!osxsave || !avx) {
    return features;
  }
  const unsigned xcr0 = read_xcr0();
  if ((xcr0 & kXcr0SseAvx) != kXcr0SseAvx) {
    return features;
  }
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
    return features;
  }
  const bool avx2 = (ebx & (1u << 5)) != 0;
  const bool avx512f = (ebx & (1u << 16)) != 0;
  const bool avx512dq = (ebx & (1u << 17)) != 0;
  const bool avx512bw = (ebx & (1u << 30)) != 0;
  features.avx2_fma = avx2 && fma && f16c;
  features.avx512f =
      features.avx2_fma && avx512f && avx512dq && avx512bw && (xcr0 & kXcr0Avx512) == kXcr0Avx512;
  if (features.avx512f && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) {
    features.avx512_bf16 = (eax & (1u << 5)) != 0;
  }
  return features;
}
#endif

#if RMSPROP_EXT_X86
// The CPU family of an AMD or Hygon CPU (17h Zen and Zen 2, 18h Hygon's Zen, 19h Zen 3 and Zen 4,
// 1Ah Zen 5), 0 for other vendors.
unsigned detect_zen_family() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) {
    return 0;
  }
  char vendor[13] = {};
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  const bool amd = std::strcmp(vendor, "AuthenticAMD") == 0;
  const bool hygon = std::strcmp(vendor, "HygonGenuine") == 0;
  if ((!amd && !hygon) || !__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
    return 0;
  }
  const unsigned base_family = (eax >> 8) & 0xfu;
  return base_family == 0xfu ? base_family + ((eax >> 20) & 0xffu) : base_family;
}

const CpuFeatures& features() {
  static const CpuFeatures detected = detect_features();
  return detected;
}
#endif

bool cpu_runs(Isa isa) {
#if RMSPROP_EXT_X86
  const CpuFeatures& features = rmsprop_ext::features();
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return features.avx2_fma;
    case Isa::kAvx512:
      return features.avx512f;
    case Isa::kNeon:
      return false;
  }
  return false;
#elif defined(__aarch64__)
  return isa == Isa::kScalar || isa == Isa::kNeon;  // AdvSIMD is part of every aarch64 CPU
#else
  return isa == Isa::kScalar;
#endif
}

bool compiled(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return RMSPROP_EXT_HAVE_AVX2 != 0;
    case Isa::kAvx512:
      return RMSPROP_EXT_HAVE_AVX512 != 0;
    case Isa::kNeon:
      return RMSPROP_EXT_HAVE_NEON != 0;
  }
  return false;
}

constexpr Isa kAllIsas[] = {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kNeon};

Isa highest_available() {
  Isa best = Isa::kScalar;
  for (Isa isa : kAllIsas) {
    if (compiled(isa) && cpu_runs(isa)) {
      best = isa;
    }
  }
  return best;
}

template <typename Predicate>
std::vector<Isa> isas_where(Predicate predicate) {
  std::vector<Isa> out;
  for (Isa isa : kAllIsas) {
    if (predicate(isa)) {
      out.push_back(isa);
    }
  }
  return out;
}

std::atomic<Isa>& active_slot() {
  static std::atomic<Isa> active{highest_available()};
  return active;
}

std::atomic<bool>& bf16_slot() {
  static std::atomic<bool> enabled{cpu_has_avx512_bf16()};
  return enabled;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kNeon:
      return "neon";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : kAllIsas) {
    if (name == isa_name(isa)) {
      return isa;
    }
  }
  throw std::invalid_argument("unknown instruction set '" + name +
                              "'; expected one of: scalar, avx2, avx512, neon");
}

std::vector<Isa> compiled_isas() { return isas_where(compiled); }

std::vector<Isa> cpu_isas() { return isas_where(cpu_runs); }

std::vector<Isa> available_isas() {
  return isas_where([](Isa isa) { return compiled(isa) && cpu_runs(isa); });
}

Isa active_isa() { return active_slot().load(std::memory_order_relaxed); }

bool cpu_has_avx512_bf16() {
#if RMSPROP_EXT_X86 && RMSPROP_EXT_HAVE_AVX512
  return features().avx512_bf16;
#else
  return false;
#endif
}

bool bf16_instructions() { return bf16_slot().load(std::memory_order_relaxed); }

bool set_bf16_instructions(bool enabled) {
  if (enabled && !cpu_has_avx512_bf16()) {
    return false;
  }
  bf16_slot().store(enabled, std::memory_order_relaxed);
  return true;
}

bool cpu_has_zen_l1_utags() {
#if RMSPROP_EXT_X86
  static const bool detected = [] {
    const unsigned family = detect_zen_family();
    return family >= 0x17u && family <= 0x19u;
  }();
  return detected;
#else
  return false;
#endif
}

void set_active_isa(Isa isa) {
  if (!compiled(isa)) {
    throw std::runtime_error(std::string("instruction set '") + isa_name(isa) +
                             "' was not compiled into this build of rmsprop_ext");
  }
  if (!cpu_runs(isa)) {
    throw std::runtime_error(std::string("instruction set '") + isa_name(isa) +
                             "' is not supported by this CPU (or not enabled by the OS)");
  }
  active_slot().store(isa, std::memory_order_relaxed);
}

void apply_isa_from_environment() {
  const char* value = std::getenv("RMSPROP_EXT_ISA");
  if (value == nullptr || *value == '\0') {
    return;
  }
  try {
    set_active_isa(parse_isa(value));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("RMSPROP_EXT_ISA: ") + e.what());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string("RMSPROP_EXT_ISA: ") + e.what());
  }
}

}  // namespace rmsprop_ext
