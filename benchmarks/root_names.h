// The square-root argument of the float32 layout programs (two_pass_layouts.cpp,
// written_pairs.cpp): "mkl_sse42" or "mkl_avx2" for MKL's forms, anything else for the IEEE root.
#pragma once

#include <string>

#include "core/rmsprop.h"

inline rmsprop_ext::SquareRoot parse_root(const std::string& name) {
  if (name == "mkl_sse42") {
    return rmsprop_ext::SquareRoot::kMklSse42;
  }
  if (name == "mkl_avx2") {
    return rmsprop_ext::SquareRoot::kMklAvx2;
  }
  return rmsprop_ext::SquareRoot::kIeee;
}
