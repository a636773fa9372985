// Compile-time switches for runtime values, in one style (after mamba's static_switch.h): each
// calls fn(std::integral_constant<...>) so the callee can use the value as a template argument.
#pragma once

#include <type_traits>

namespace exodus {

// fn(std::true_type()) or fn(std::false_type()).
template <typename Fn>
void bool_switch(bool value, const Fn& fn) {
  if (value) {
    fn(std::true_type());
  } else {
    fn(std::false_type());
  }
}

// fn(std::integral_constant<int, V>()) for the V in Values equal to value; false if none is.
template <int... Values, typename Fn>
bool int_switch(int value, const Fn& fn) {
  return ((value == Values ? (fn(std::integral_constant<int, Values>()), true) : false) || ...);
}

}  // namespace exodus
