// lbd's setsockopt clears the rollover flag of PACKET_FANOUT joins (dataplane/packet_fanout.h),
// shown on real packet sockets: a group created through it has no rollover, so the kernel
// refuses a join that asks for rollover and accepts one that does not. Needs root (packet
// sockets); skipped otherwise.
#include "dataplane/packet_fanout.h"

#include <dlfcn.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cerrno>

#include <gtest/gtest.h>

namespace fulcrum::dataplane {
namespace {

// A packet socket bound to the loopback interface (fanout needs a bound socket), or -1.
int BoundPacketSocket() {
  const int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (fd < 0) {
    return -1;
  }
  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(ETH_P_ALL);
  address.sll_ifindex = static_cast<int>(if_nametoindex("lo"));
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int FanoutArg(int group, int flags) { return group | ((PACKET_FANOUT_HASH | flags) << 16); }

// The C library's setsockopt, bypassing lbd's.
int LibcSetsockopt(int fd, int level, int name, const void* value, socklen_t length) {
  using Fn = int (*)(int, int, int, const void*, socklen_t);
  static const auto fn = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "setsockopt"));
  return fn(fd, level, name, value, length);
}

TEST(PacketFanoutTest, JoinsWithoutRollover) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "packet sockets need root";
  }
  const int first = BoundPacketSocket();
  const int second = BoundPacketSocket();
  const int third = BoundPacketSocket();
  ASSERT_GE(first, 0);
  ASSERT_GE(second, 0);
  ASSERT_GE(third, 0);
  const int group = (getpid() ^ 0x5a5a) & 0xffff;
  const std::uint32_t joins = FanoutJoinsWithoutRollover();

  // What DPDK's af_packet PMD asks for: hash, defrag and rollover.
  const int pmd = FanoutArg(group, PACKET_FANOUT_FLAG_DEFRAG | PACKET_FANOUT_FLAG_ROLLOVER);
  ASSERT_EQ(setsockopt(first, SOL_PACKET, PACKET_FANOUT, &pmd, sizeof(pmd)), 0) << errno;
  EXPECT_EQ(FanoutJoinsWithoutRollover(), joins + 1);

  // The group has no rollover: the kernel refuses a join with it and takes one without.
  errno = 0;
  EXPECT_EQ(LibcSetsockopt(second, SOL_PACKET, PACKET_FANOUT, &pmd, sizeof(pmd)), -1);
  EXPECT_EQ(errno, EINVAL);
  const int plain = FanoutArg(group, PACKET_FANOUT_FLAG_DEFRAG);
  EXPECT_EQ(LibcSetsockopt(third, SOL_PACKET, PACKET_FANOUT, &plain, sizeof(plain)), 0) << errno;

  // Other options pass through unchanged.
  const int size = 1 << 20;
  EXPECT_EQ(setsockopt(second, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
  EXPECT_EQ(FanoutJoinsWithoutRollover(), joins + 1);
  close(first);
  close(second);
  close(third);
}

}  // namespace
}  // namespace fulcrum::dataplane
