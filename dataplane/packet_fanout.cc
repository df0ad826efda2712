#include "dataplane/packet_fanout.h"

#include <dlfcn.h>
#include <linux/if_packet.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace fulcrum::dataplane {
namespace {

using SetsockoptFn = int (*)(int, int, int, const void*, socklen_t);

std::atomic<std::uint32_t> fanout_joins{0};

SetsockoptFn LibcSetsockopt() {
  static const auto fn = reinterpret_cast<SetsockoptFn>(dlsym(RTLD_NEXT, "setsockopt"));
  return fn;
}

}  // namespace

std::uint32_t FanoutJoinsWithoutRollover() { return fanout_joins.load(); }

}  // namespace fulcrum::dataplane

// The PACKET_FANOUT argument is an int, or a struct fanout_args that begins with the same
// four bytes: the group id in the low 16 bits, the mode and flags in the high 16 (packet(7)).
extern "C" int setsockopt(int fd, int level, int optname, const void* optval,
                          socklen_t optlen) noexcept {
  const fulcrum::dataplane::SetsockoptFn libc = fulcrum::dataplane::LibcSetsockopt();
  if (libc == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  std::array<unsigned char, 16> copy{};
  if (level != SOL_PACKET || optname != PACKET_FANOUT || optval == nullptr ||
      optlen < static_cast<socklen_t>(sizeof(int)) || optlen > copy.size()) {
    return libc(fd, level, optname, optval, optlen);
  }
  std::memcpy(copy.data(), optval, optlen);
  int arg = 0;
  std::memcpy(&arg, copy.data(), sizeof(arg));
  arg &= ~(PACKET_FANOUT_FLAG_ROLLOVER << 16);
  std::memcpy(copy.data(), &arg, sizeof(arg));
  const int rc = libc(fd, level, optname, copy.data(), optlen);
  if (rc == 0) {
    fulcrum::dataplane::fanout_joins.fetch_add(1);
  }
  return rc;
}
