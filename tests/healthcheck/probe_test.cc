// Real-socket probes on loopback: each ProbeSocket is driven with poll() until it ends.
#include "healthcheck/probe.h"

#include <poll.h>
#include <sys/epoll.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/healthcheck/test_servers.h"

namespace fulcrum::hc {
namespace {

using std::chrono::milliseconds;
using testing::ClosedPort;
using testing::TcpServer;
using testing::UdpServer;

Target MakeTarget(model::HealthCheckType type, std::uint16_t port) {
  Target target;
  target.key.listener = "lsn-11223344";
  target.key.backend = *Endpoint::Parse("127.0.0.1:" + std::to_string(port));
  target.check.type = type;
  target.check.timeout = 1;
  return target;
}

ProbeSpec Compile(const Target& target) {
  Result<ProbeSpec> spec = CompileProbe(target);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  ProbeSpec compiled = spec.ok() ? *spec : ProbeSpec{};
  compiled.timeout = milliseconds(300);  // the model's minimum is 1 s; tests wait less
  return compiled;
}

std::uint32_t ToEpoll(short revents) {
  std::uint32_t events = 0;
  events |= (revents & POLLIN) != 0 ? static_cast<std::uint32_t>(EPOLLIN) : 0u;
  events |= (revents & POLLOUT) != 0 ? static_cast<std::uint32_t>(EPOLLOUT) : 0u;
  events |= (revents & POLLERR) != 0 ? static_cast<std::uint32_t>(EPOLLERR) : 0u;
  events |= (revents & POLLHUP) != 0 ? static_cast<std::uint32_t>(EPOLLHUP) : 0u;
  return events;
}

// Runs one probe to its end, abandoning it at spec.timeout as the prober does.
ProbeOutcome RunProbe(const ProbeSpec& spec, const SocketAddress* source = nullptr) {
  std::vector<char> scratch(64 * 1024);
  ProbeSocket probe;
  std::optional<ProbeOutcome> outcome = probe.Start(spec, source, scratch);
  const auto deadline = Clock::now() + spec.timeout;
  while (!outcome) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return probe.Abandon();
    }
    const short wanted = (probe.events() & EPOLLOUT) != 0 ? POLLOUT : POLLIN;
    pollfd fd{probe.fd(), wanted, 0};
    if (poll(&fd, 1, static_cast<int>(left.count()) + 1) > 0) {
      outcome = probe.OnReady(spec, ToEpoll(fd.revents), scratch);
    }
  }
  EXPECT_FALSE(probe.active());
  return *outcome;
}

// A tcp probe ends at connect, maybe before the server's thread has accepted.
bool WaitForAccepts(TcpServer& server, int count) {
  const auto deadline = Clock::now() + milliseconds(1000);
  while (server.accepted() < count && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  return server.accepted() >= count;
}

// ---- tcp

TEST(TcpProbeTest, ListeningPortSucceeds) {
  TcpServer server(TcpServer::Mode::kAccept);
  const ProbeOutcome outcome =
      RunProbe(Compile(MakeTarget(model::HealthCheckType::kTcp, server.port())));
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kSuccess);
  EXPECT_EQ(outcome.reason, "connected");
}

TEST(TcpProbeTest, ClosedPortIsRefused) {
  const ProbeOutcome outcome =
      RunProbe(Compile(MakeTarget(model::HealthCheckType::kTcp, ClosedPort())));
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kFailure);
  EXPECT_EQ(outcome.reason, "refused");
}

TEST(TcpProbeTest, CheckPortOverridesTheBackendPort) {
  TcpServer server(TcpServer::Mode::kAccept);
  Target target = MakeTarget(model::HealthCheckType::kTcp, ClosedPort());
  target.check.port = server.port();
  EXPECT_EQ(RunProbe(Compile(target)).kind, ProbeOutcome::Kind::kSuccess);
}

TEST(TcpProbeTest, SourceAddressIsUsed) {
  TcpServer server(TcpServer::Mode::kAccept);
  const ProbeSpec spec = Compile(MakeTarget(model::HealthCheckType::kTcp, server.port()));
  std::vector<char> scratch(1024);
  // 127.0.0.2 is a loopback address on Linux; binding to an address this host does not have
  // is a local error, which must not count against the backend.
  const SocketAddress good = SocketAddress::From(*IpAddress::Parse("127.0.0.2"), 0);
  const SocketAddress foreign = SocketAddress::From(*IpAddress::Parse("192.0.2.1"), 0);
  ProbeSocket probe;
  std::optional<ProbeOutcome> bad = probe.Start(spec, &foreign, scratch);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->kind, ProbeOutcome::Kind::kInconclusive) << bad->reason;
  std::optional<ProbeOutcome> started = probe.Start(spec, &good, scratch);
  if (!started) {
    pollfd fd{probe.fd(), POLLOUT, 0};
    ASSERT_EQ(poll(&fd, 1, 1000), 1);
    started = probe.OnReady(spec, ToEpoll(fd.revents), scratch);
  }
  ASSERT_TRUE(started.has_value());
  EXPECT_EQ(started->kind, ProbeOutcome::Kind::kSuccess) << started->reason;
}

TEST(TcpProbeTest, Ipv6TargetFromAnIpv6SourceOnLoopback) {
  if (!testing::Ipv6LoopbackUsable()) {
    GTEST_SKIP() << "no ::1 here";
  }
  TcpServer server(TcpServer::Mode::kAccept, "", 0, AF_INET6);
  Target target = MakeTarget(model::HealthCheckType::kTcp, server.port());
  target.key.backend = *Endpoint::Parse("[::1]:" + std::to_string(server.port()));
  const ProbeSpec spec = Compile(target);
  ASSERT_EQ(spec.address.family(), AF_INET6);
  const SocketAddress loopback = SocketAddress::From(*IpAddress::Parse("::1"), 0);
  const ProbeOutcome outcome = RunProbe(spec, &loopback);
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kSuccess) << outcome.reason;
  EXPECT_EQ(outcome.reason, "connected");
  ASSERT_TRUE(WaitForAccepts(server, 1));
  EXPECT_EQ(server.last_peer(), "::1");
  // The IPv6 source is really bound: an address this host does not have is a local error.
  const SocketAddress foreign = SocketAddress::From(*IpAddress::Parse("2001:db8::1"), 0);
  const ProbeOutcome bad = RunProbe(spec, &foreign);
  EXPECT_EQ(bad.kind, ProbeOutcome::Kind::kInconclusive) << bad.reason;
  EXPECT_EQ(server.accepted(), 1);
}

// ---- sources

SocketAddress Backend(const std::string& addr) {
  return SocketAddress::From(*IpAddress::Parse(addr), 80);
}

std::string SourceOf(const ProbeSources& sources, const std::string& backend) {
  const SocketAddress* source = sources.For(Backend(backend));
  return source != nullptr ? testing::AddressText(source->storage) : "kernel";
}

Result<ProbeSources> Sources(const std::vector<std::string>& texts) {
  std::vector<IpAddress> addrs;
  for (const std::string& text : texts) {
    addrs.push_back(*IpAddress::Parse(text));
  }
  return ProbeSources::Create(addrs);
}

TEST(ProbeSourcesTest, EachBackendGetsTheSourceOfItsFamily) {
  // The order of the flags does not matter.
  for (const std::vector<std::string>& order :
       {std::vector<std::string>{"198.18.1.254", "2001:db8:1::fe"},
        std::vector<std::string>{"2001:db8:1::fe", "198.18.1.254"}}) {
    Result<ProbeSources> sources = Sources(order);
    ASSERT_TRUE(sources.ok()) << sources.status().ToString();
    EXPECT_EQ(SourceOf(*sources, "198.18.2.11"), "198.18.1.254");
    EXPECT_EQ(SourceOf(*sources, "2001:db8:2::11"), "2001:db8:1::fe");
    EXPECT_EQ(sources->ToString(), "ipv4 198.18.1.254, ipv6 2001:db8:1::fe");
  }
}

TEST(ProbeSourcesTest, AFamilyWithoutASourceIsLeftToTheKernel) {
  Result<ProbeSources> v6_only = Sources({"2001:db8:1::fe"});
  ASSERT_TRUE(v6_only.ok());
  EXPECT_EQ(SourceOf(*v6_only, "198.18.2.11"), "kernel");
  EXPECT_EQ(SourceOf(*v6_only, "2001:db8:2::11"), "2001:db8:1::fe");
  EXPECT_EQ(v6_only->ToString(), "ipv4 the kernel's choice, ipv6 2001:db8:1::fe");

  Result<ProbeSources> v4_only = Sources({"198.18.1.254"});
  ASSERT_TRUE(v4_only.ok());
  EXPECT_EQ(SourceOf(*v4_only, "198.18.2.11"), "198.18.1.254");
  EXPECT_EQ(SourceOf(*v4_only, "2001:db8:2::11"), "kernel");

  const ProbeSources none;
  EXPECT_EQ(SourceOf(none, "198.18.2.11"), "kernel");
  EXPECT_EQ(SourceOf(none, "2001:db8:2::11"), "kernel");
  EXPECT_EQ(none.ToString(), "ipv4 the kernel's choice, ipv6 the kernel's choice");
}

TEST(ProbeSourcesTest, RefusesTwoAddressesOfOneFamily) {
  Result<ProbeSources> v4 = Sources({"198.18.1.254", "2001:db8:1::fe", "198.18.1.253"});
  ASSERT_FALSE(v4.ok());
  EXPECT_EQ(v4.status().code(), ErrorCode::kInvalidParameter);
  EXPECT_EQ(v4.status().message(),
            "two ipv4 addresses (198.18.1.254 and 198.18.1.253): give at most one per address "
            "family");
  Result<ProbeSources> v6 = Sources({"2001:db8:1::fe", "::1"});
  ASSERT_FALSE(v6.ok());
  EXPECT_NE(v6.status().message().find("two ipv6 addresses"), std::string::npos);
}

// ---- http

ProbeOutcome HttpProbe(const std::string& reply, std::vector<std::string> codes = {"2xx", "3xx"},
                       std::string* request = nullptr) {
  TcpServer server(TcpServer::Mode::kHttp, reply);
  Target target = MakeTarget(model::HealthCheckType::kHttp, server.port());
  target.check.path = "/healthz";
  target.check.codes = std::move(codes);
  const ProbeOutcome outcome = RunProbe(Compile(target));
  if (request != nullptr) {
    *request = server.last_request();
  }
  return outcome;
}

TEST(HttpProbeTest, OkStatusSucceedsAndTheRequestIsExact) {
  std::string request;
  const ProbeOutcome outcome =
      HttpProbe("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", {"2xx", "3xx"}, &request);
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kSuccess);
  EXPECT_EQ(outcome.reason, "status 200");
  EXPECT_EQ(request,
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            "User-Agent: fulcrum-healthd\r\n\r\n");
}

TEST(HttpProbeTest, RedirectPassesOnlyWhen3xxIsAccepted) {
  EXPECT_EQ(HttpProbe("HTTP/1.1 302 Found\r\n\r\n").kind, ProbeOutcome::Kind::kSuccess);
  const ProbeOutcome only_2xx = HttpProbe("HTTP/1.1 302 Found\r\n\r\n", {"2xx"});
  EXPECT_EQ(only_2xx.kind, ProbeOutcome::Kind::kFailure);
  EXPECT_EQ(only_2xx.reason, "unexpected status 302");
}

TEST(HttpProbeTest, ServerErrorFails) {
  const ProbeOutcome outcome = HttpProbe("HTTP/1.1 500 Internal Server Error\r\n\r\n");
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kFailure);
  EXPECT_EQ(outcome.reason, "unexpected status 500");
}

TEST(HttpProbeTest, GarbageFails) {
  const ProbeOutcome outcome = HttpProbe("SSH-2.0-OpenSSH_9.2\r\n");
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kFailure);
  EXPECT_EQ(outcome.reason, "bad status line");
}

TEST(HttpProbeTest, CloseWithoutReplyFails) {
  const ProbeOutcome outcome = HttpProbe("");
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kFailure);
  EXPECT_EQ(outcome.reason, "closed without reply");
}

TEST(HttpProbeTest, SilentServerTimesOut) {
  TcpServer server(TcpServer::Mode::kSilent);
  const auto start = Clock::now();
  const ProbeOutcome outcome =
      RunProbe(Compile(MakeTarget(model::HealthCheckType::kHttp, server.port())));
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kFailure);
  EXPECT_EQ(outcome.reason, "timeout awaiting reply");
  EXPECT_GE(Clock::now() - start, milliseconds(290));
}

TEST(HttpProbeTest, ClosedPortIsRefused) {
  const ProbeOutcome outcome =
      RunProbe(Compile(MakeTarget(model::HealthCheckType::kHttp, ClosedPort())));
  EXPECT_EQ(outcome.reason, "refused");
}

// ---- udp

Target UdpTarget(std::uint16_t port, const std::string& send_hex, const std::string& expect_hex) {
  Target target = MakeTarget(model::HealthCheckType::kUdp, port);
  target.protocol = model::Protocol::kUdp;
  target.check.send = send_hex;
  target.check.expect = expect_hex;
  return target;
}

TEST(UdpProbeTest, MatchingReplySucceeds) {
  UdpServer server("PONG 42");
  const ProbeOutcome outcome = RunProbe(Compile(UdpTarget(server.port(), "50494e47", "504f4e47")));
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kSuccess);
  EXPECT_EQ(outcome.reason, "reply matched");
  EXPECT_EQ(server.last_datagram(), "PING");
}

TEST(UdpProbeTest, OtherReplyFails) {
  UdpServer server("NOPE");
  const ProbeOutcome outcome = RunProbe(Compile(UdpTarget(server.port(), "50494e47", "504f4e47")));
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kFailure);
  EXPECT_EQ(outcome.reason, "unexpected reply");
}

TEST(UdpProbeTest, SilenceTimesOut) {
  UdpServer server("");
  const ProbeOutcome outcome = RunProbe(Compile(UdpTarget(server.port(), "50494e47", "504f4e47")));
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kFailure);
  EXPECT_EQ(outcome.reason, "timeout awaiting reply");
  EXPECT_EQ(server.received(), 1);
}

TEST(UdpProbeTest, PortUnreachableIsRefused) {
  const int fd = testing::BindLoopback(SOCK_DGRAM, 0);
  const std::uint16_t port = testing::LocalPort(fd);
  close(fd);
  const ProbeOutcome outcome = RunProbe(Compile(UdpTarget(port, "50494e47", "504f4e47")));
  EXPECT_EQ(outcome.kind, ProbeOutcome::Kind::kFailure);
  EXPECT_EQ(outcome.reason, "refused");
}

TEST(CompileProbeTest, RefusesChecksItCannotRun) {
  Target odd = UdpTarget(53, "abc", "00");
  EXPECT_FALSE(CompileProbe(odd).ok());
  Target codes = MakeTarget(model::HealthCheckType::kHttp, 80);
  codes.check.codes = {"7xx"};
  EXPECT_FALSE(CompileProbe(codes).ok());
}

TEST(CompileProbeTest, HttpHostHeaderUsesTheConfiguredHost) {
  Target target = MakeTarget(model::HealthCheckType::kHttp, 8080);
  target.check.host = "app.example";
  Result<ProbeSpec> spec = CompileProbe(target);
  ASSERT_TRUE(spec.ok());
  EXPECT_NE(spec->payload.find("\r\nHost: app.example\r\n"), std::string::npos);
}

}  // namespace
}  // namespace fulcrum::hc
