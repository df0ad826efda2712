#include "ctl/socket_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace fulcrum::ctl {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr auto kClientTimeout = std::chrono::seconds(5);

// echo: returns the request; fail: ResourceNotFound; throw: throws; big: a result of
// args.bytes bytes.
Result<json> TestHandler(const protocol::Request& request) {
  if (request.cmd == "fail") {
    return Error(ErrorCode::kResourceNotFound, "lb {} does not exist",
                 request.args.value("id", std::string("?")));
  }
  if (request.cmd == "throw") {
    throw std::runtime_error("handler bug");
  }
  if (request.cmd == "big") {
    return json{{"data", std::string(request.args.value("bytes", std::size_t{0}), 'x')}};
  }
  return json{{"cmd", request.cmd}, {"id", request.id}, {"args", request.args}};
}

std::string Request(std::uint64_t id, const std::string& cmd, json args = json::object()) {
  return protocol::EncodeRequest({.id = id, .cmd = cmd, .args = std::move(args)});
}

// A blocking client socket whose every call gives up after kClientTimeout.
class TestClient {
 public:
  explicit TestClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval timeout{.tv_sec = kClientTimeout.count(), .tv_usec = 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~TestClient() { ::close(fd_); }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  // False when the server has closed the connection (or the write timed out).
  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // The next line without its '\n'; nullopt on EOF, error or timeout.
  std::optional<std::string> ReadLine() {
    while (true) {
      if (auto newline = buffer_.find('\n'); newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return line;
      }
      if (!Fill()) {
        return std::nullopt;
      }
    }
  }

  protocol::Response ReadResponse() {
    std::optional<std::string> line = ReadLine();
    if (!line) {
      return {std::nullopt, Status(ErrorCode::kIoError, "no response line")};
    }
    return protocol::ParseResponse(*line);
  }

  // True once the server closed the connection (EOF or reset), discarding unread data.
  bool WaitClosed() {
    buffer_.clear();
    while (Fill()) {
      buffer_.clear();
    }
    return closed_;
  }

 private:
  bool Fill() {
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
    closed_ = n == 0 || errno == ECONNRESET;
    return false;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string buffer_;
};

// Polls a server on its own thread. connection_count() is published after every round,
// so the test thread never touches the server while it runs.
class ServerLoop {
 public:
  explicit ServerLoop(std::unique_ptr<SocketServer> server) : server_(std::move(server)) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        server_->Poll(10);
        connections_.store(server_->connection_count());
      }
    });
  }
  ~ServerLoop() { Stop(); }

  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  // Waits (bounded) until the server holds `count` connections.
  bool WaitForConnections(std::size_t count) {
    const auto deadline = Clock::now() + kClientTimeout;
    while (Clock::now() < deadline) {
      if (connections_.load() == count) {
        return true;
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    return false;
  }

  std::unique_ptr<SocketServer> Release() {
    Stop();
    return std::move(server_);
  }

 private:
  std::unique_ptr<SocketServer> server_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> connections_{0};
  std::thread thread_;
};

class SocketServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/fulcrum-sock-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr) << std::strerror(errno);
    dir_ = pattern;
    path_ = dir_ + "/lbd.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  SocketServerOptions Options() const {
    SocketServerOptions options;
    options.path = path_;
    return options;
  }

  std::unique_ptr<SocketServer> MakeServer(SocketServerOptions options) {
    auto server = SocketServer::Create(std::move(options), TestHandler);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    return server.ok() ? std::move(server).value() : nullptr;
  }

  std::unique_ptr<ServerLoop> StartLoop(SocketServerOptions options) {
    std::unique_ptr<SocketServer> server = MakeServer(std::move(options));
    return server ? std::make_unique<ServerLoop>(std::move(server)) : nullptr;
  }

  std::string dir_;
  std::string path_;
};

void ExpectEcho(TestClient& client, std::uint64_t id, const std::string& cmd, const json& args) {
  protocol::Response response = client.ReadResponse();
  ASSERT_TRUE(response.result.ok()) << response.result.status().ToString();
  EXPECT_EQ(response.id, std::optional<std::uint64_t>(id));
  EXPECT_EQ((*response.result)["cmd"], cmd);
  EXPECT_EQ((*response.result)["id"], id);
  EXPECT_EQ((*response.result)["args"], args);
}

void ExpectError(TestClient& client, std::optional<std::uint64_t> id, ErrorCode code) {
  protocol::Response response = client.ReadResponse();
  ASSERT_FALSE(response.result.ok());
  EXPECT_EQ(response.result.status().code(), code) << response.result.status().ToString();
  EXPECT_FALSE(response.result.status().message().empty());
  EXPECT_EQ(response.id, id);
}

TEST_F(SocketServerTest, AnswersOneRequest) {
  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  TestClient client(path_);
  ASSERT_TRUE(client.connected());
  const json args = {{"name", "web"}, {"vip", "198.18.100.10"}};
  ASSERT_TRUE(client.Send(Request(7, "lb.create", args)));
  ExpectEcho(client, 7, "lb.create", args);
}

TEST_F(SocketServerTest, AnswersPipelinedRequestsInOrder) {
  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  TestClient client(path_);
  std::string batch;
  for (std::uint64_t id = 0; id < 200; ++id) {
    batch += Request(1000 - id, "echo", {{"n", id}});
  }
  ASSERT_TRUE(client.Send(batch));
  for (std::uint64_t id = 0; id < 200; ++id) {
    ExpectEcho(client, 1000 - id, "echo", {{"n", id}});
  }
}

TEST_F(SocketServerTest, ReturnsHandlerErrorsWithTheirCodeAndId) {
  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  TestClient client(path_);
  ASSERT_TRUE(client.Send(Request(3, "fail", {{"id", "lb-0a1b2c3d"}})));
  protocol::Response response = client.ReadResponse();
  ASSERT_FALSE(response.result.ok());
  EXPECT_EQ(response.id, std::optional<std::uint64_t>(3));
  EXPECT_EQ(response.result.status().code(), ErrorCode::kResourceNotFound);
  EXPECT_EQ(response.result.status().message(), "lb lb-0a1b2c3d does not exist");
}

TEST_F(SocketServerTest, HandlerExceptionBecomesInternalAndServerSurvives) {
  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  TestClient client(path_);
  ASSERT_TRUE(client.Send(Request(4, "throw") + Request(5, "echo")));
  ExpectError(client, 4, ErrorCode::kInternal);
  ExpectEcho(client, 5, "echo", json::object());
  TestClient other(path_);
  ASSERT_TRUE(other.Send(Request(6, "echo")));
  ExpectEcho(other, 6, "echo", json::object());
}

TEST_F(SocketServerTest, ServesSeveralClientsAtOnce) {
  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(std::make_unique<TestClient>(path_));
    ASSERT_TRUE(clients.back()->connected());
  }
  ASSERT_TRUE(loop->WaitForConnections(8));
  // Interleave: every client sends before any reads.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 8; ++i) {
      ASSERT_TRUE(clients[i]->Send(Request(round, "echo", {{"client", i}})));
    }
    for (int i = 0; i < 8; ++i) {
      ExpectEcho(*clients[i], round, "echo", {{"client", i}});
    }
  }
}

TEST_F(SocketServerTest, HalfLineDoesNotBlockOtherClients) {
  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  TestClient stalled(path_);
  const std::string request = Request(1, "echo", {{"who", "stalled"}});
  ASSERT_TRUE(stalled.Send(request.substr(0, request.size() / 2)));

  TestClient other(path_);
  ASSERT_TRUE(other.Send(Request(2, "echo")));
  ExpectEcho(other, 2, "echo", json::object());

  ASSERT_TRUE(stalled.Send(request.substr(request.size() / 2)));
  ExpectEcho(stalled, 1, "echo", {{"who", "stalled"}});
}

TEST_F(SocketServerTest, JunkGetsMalformedRequestAndTheConnectionStaysUsable) {
  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  TestClient client(path_);
  ASSERT_TRUE(client.Send("this is not json\n"));
  ExpectError(client, std::nullopt, ErrorCode::kMalformedRequest);
  ASSERT_TRUE(client.Send(std::string("\x00\xff\x01}{\n", 6)));
  ExpectError(client, std::nullopt, ErrorCode::kMalformedRequest);
  ASSERT_TRUE(client.Send(R"({"v": 2, "id": 11, "cmd": "echo"})"
                          "\n"));
  ExpectError(client, 11, ErrorCode::kUnsupportedVersion);
  ASSERT_TRUE(client.Send(Request(12, "echo")));
  ExpectEcho(client, 12, "echo", json::object());
}

TEST_F(SocketServerTest, EmptyLinesAreIgnored) {
  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  TestClient client(path_);
  ASSERT_TRUE(client.Send("\n\r\n  \n" + Request(1, "echo") + "\n" + Request(2, "echo")));
  ExpectEcho(client, 1, "echo", json::object());
  ExpectEcho(client, 2, "echo", json::object());
}

TEST_F(SocketServerTest, OversizedLineGetsRequestTooLargeAndCloses) {
  SocketServerOptions options = Options();
  options.max_line_bytes = 1024;
  auto loop = StartLoop(options);
  ASSERT_TRUE(loop);
  TestClient client(path_);
  // The request before it is answered first; the one after it is never read.
  ASSERT_TRUE(client.Send(Request(1, "echo") + std::string(2000, 'a') + "\n" + Request(2, "echo")));
  ExpectEcho(client, 1, "echo", json::object());
  ExpectError(client, std::nullopt, ErrorCode::kRequestTooLarge);
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_TRUE(loop->WaitForConnections(0));
}

TEST_F(SocketServerTest, LineAtTheLimitIsServed) {
  SocketServerOptions options = Options();
  options.max_line_bytes = 1024;
  auto loop = StartLoop(options);
  ASSERT_TRUE(loop);
  TestClient client(path_);
  std::string line = Request(1, "echo");
  line.insert(1, options.max_line_bytes - line.size(), ' ');
  ASSERT_EQ(line.size(), options.max_line_bytes);
  ASSERT_TRUE(client.Send(line));
  ExpectEcho(client, 1, "echo", json::object());
}

TEST_F(SocketServerTest, OversizedLineIsRefusedBeforeItsNewlineArrives) {
  SocketServerOptions options = Options();
  options.max_line_bytes = 1024;
  auto loop = StartLoop(options);
  ASSERT_TRUE(loop);
  TestClient client(path_);
  ASSERT_TRUE(client.Send(std::string(1500, '{')));  // no '\n', ever
  ExpectError(client, std::nullopt, ErrorCode::kRequestTooLarge);
  EXPECT_TRUE(client.WaitClosed());
}

// A client still writing when its line is refused must still get the error: closing a socket
// with unread input resets it, which destroys the reply (the server drains instead).
TEST_F(SocketServerTest, OversizedLineErrorSurvivesAClientStillWriting) {
  SocketServerOptions options = Options();
  options.max_line_bytes = 1024;
  auto loop = StartLoop(options);
  ASSERT_TRUE(loop);
  TestClient client(path_);
  std::thread writer([&client] {
    const std::string blob(256 << 10, 'x');
    for (int i = 0; i < 12 && client.Send(blob); ++i) {
    }
    ::shutdown(client.fd(), SHUT_WR);
  });
  ExpectError(client, std::nullopt, ErrorCode::kRequestTooLarge);
  writer.join();
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_TRUE(loop->WaitForConnections(0));
}

TEST_F(SocketServerTest, IdleConnectionIsClosed) {
  SocketServerOptions options = Options();
  options.idle_timeout = milliseconds(200);
  auto loop = StartLoop(options);
  ASSERT_TRUE(loop);
  TestClient client(path_);
  ASSERT_TRUE(loop->WaitForConnections(1));
  const auto start = Clock::now();
  EXPECT_TRUE(client.WaitClosed());
  const auto waited = Clock::now() - start;
  EXPECT_GE(waited, milliseconds(150));
  EXPECT_LT(waited, milliseconds(3000));
  EXPECT_TRUE(loop->WaitForConnections(0));
}

TEST_F(SocketServerTest, TricklingBytesDoesNotKeepAConnectionAlive) {
  SocketServerOptions options = Options();
  options.idle_timeout = milliseconds(200);
  auto loop = StartLoop(options);
  ASSERT_TRUE(loop);
  TestClient slowloris(path_);
  const auto start = Clock::now();
  bool closed = false;
  for (int i = 0; i < 100 && !closed; ++i) {  // one byte per 20 ms, never a newline
    closed = !slowloris.Send("{");
    std::this_thread::sleep_for(milliseconds(20));
    closed = closed || loop->WaitForConnections(0);
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(Clock::now() - start, milliseconds(1500));
}

TEST_F(SocketServerTest, CompleteRequestsKeepAConnectionAlive) {
  SocketServerOptions options = Options();
  options.idle_timeout = milliseconds(200);
  auto loop = StartLoop(options);
  ASSERT_TRUE(loop);
  TestClient client(path_);
  for (std::uint64_t id = 0; id < 8; ++id) {  // 8 x 80 ms, well past one idle timeout
    std::this_thread::sleep_for(milliseconds(80));
    ASSERT_TRUE(client.Send(Request(id, "echo")));
    ExpectEcho(client, id, "echo", json::object());
  }
}

TEST_F(SocketServerTest, ConnectionOverTheLimitGetsUnavailable) {
  SocketServerOptions options = Options();
  options.max_connections = 2;
  auto loop = StartLoop(options);
  ASSERT_TRUE(loop);
  TestClient first(path_);
  TestClient second(path_);
  ASSERT_TRUE(loop->WaitForConnections(2));

  TestClient third(path_);
  ASSERT_TRUE(third.connected());
  ExpectError(third, std::nullopt, ErrorCode::kUnavailable);
  EXPECT_TRUE(third.WaitClosed());

  ASSERT_TRUE(first.Send(Request(1, "echo")));
  ExpectEcho(first, 1, "echo", json::object());
  ASSERT_TRUE(second.Send(Request(2, "echo")));
  ExpectEcho(second, 2, "echo", json::object());
}

TEST_F(SocketServerTest, ClientThatDoesNotReadIsDroppedWithoutBlockingOthers) {
  SocketServerOptions options = Options();
  options.max_pending_output = 16 * 1024;
  auto loop = StartLoop(options);
  ASSERT_TRUE(loop);
  TestClient hog(path_);
  TestClient other(path_);
  ASSERT_TRUE(loop->WaitForConnections(2));

  // 4000 responses of ~1 KiB: far more than the socket buffer plus max_pending_output.
  std::string batch;
  for (std::uint64_t id = 0; id < 4000; ++id) {
    batch += Request(id, "big", {{"bytes", 1000}});
  }
  hog.Send(batch);  // may fail part way: the server drops the hog while it is still writing

  ASSERT_TRUE(other.Send(Request(9, "echo")));
  ExpectEcho(other, 9, "echo", json::object());
  EXPECT_TRUE(loop->WaitForConnections(1));
  EXPECT_TRUE(hog.WaitClosed());
}

TEST_F(SocketServerTest, SingleResponseLargerThanTheOutputLimitIsSent) {
  SocketServerOptions options = Options();
  options.max_pending_output = 4096;
  auto loop = StartLoop(options);
  ASSERT_TRUE(loop);
  TestClient client(path_);
  ASSERT_TRUE(client.Send(Request(1, "big", {{"bytes", 500000}})));
  protocol::Response response = client.ReadResponse();
  ASSERT_TRUE(response.result.ok()) << response.result.status().ToString();
  EXPECT_EQ((*response.result)["data"].get<std::string>().size(), 500000u);
}

TEST_F(SocketServerTest, AnswersRequestsSentBeforeTheClientShutsDownItsSide) {
  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  TestClient client(path_);
  ASSERT_TRUE(client.Send(Request(1, "echo") + Request(2, "echo") + R"({"v": 1, "id": 3)"));
  ASSERT_EQ(::shutdown(client.fd(), SHUT_WR), 0);
  ExpectEcho(client, 1, "echo", json::object());
  ExpectEcho(client, 2, "echo", json::object());
  EXPECT_TRUE(client.WaitClosed());  // the cut-off third request is not answered
}

TEST_F(SocketServerTest, SocketFileHasTheConfiguredMode) {
  {
    auto server = MakeServer(Options());
    ASSERT_TRUE(server);
    struct stat info {};
    ASSERT_EQ(::stat(path_.c_str(), &info), 0);
    EXPECT_TRUE(S_ISSOCK(info.st_mode));
    EXPECT_EQ(info.st_mode & 07777, 0660u);
  }
  SocketServerOptions options = Options();
  options.mode = 0600;
  auto server = MakeServer(options);
  ASSERT_TRUE(server);
  struct stat info {};
  ASSERT_EQ(::stat(path_.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 07777, 0600u);
}

TEST_F(SocketServerTest, CreatesTheParentDirectory) {
  SocketServerOptions options = Options();
  options.path = dir_ + "/run/lbd/lbd.sock";
  auto loop = StartLoop(options);
  ASSERT_TRUE(loop);
  struct stat info {};
  ASSERT_EQ(::stat((dir_ + "/run/lbd").c_str(), &info), 0);
  EXPECT_TRUE(S_ISDIR(info.st_mode));
  EXPECT_EQ(info.st_mode & 07777, 0755u);
  TestClient client(options.path);
  ASSERT_TRUE(client.Send(Request(1, "echo")));
  ExpectEcho(client, 1, "echo", json::object());
}

TEST_F(SocketServerTest, StaleSocketFileIsReplaced) {
  // What a crashed lbd leaves: a bound socket file with nobody listening.
  const int stale = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path_.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(::bind(stale, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ::close(stale);
  ASSERT_FALSE(TestClient(path_).connected());

  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  TestClient client(path_);
  ASSERT_TRUE(client.Send(Request(1, "echo")));
  ExpectEcho(client, 1, "echo", json::object());
}

TEST_F(SocketServerTest, PathThatIsNotASocketIsRefused) {
  { std::ofstream(path_) << "precious"; }
  auto server = SocketServer::Create(Options(), TestHandler);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), ErrorCode::kAddressConflict);
  EXPECT_NE(server.status().message().find(path_), std::string::npos);
  std::ifstream file(path_);
  std::string content;
  file >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(SocketServerTest, SecondServerOnALivePathIsRefused) {
  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  auto second = SocketServer::Create(Options(), TestHandler);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), ErrorCode::kAddressConflict);
  EXPECT_NE(second.status().message().find("another lbd is serving " + path_), std::string::npos)
      << second.status().message();
  // The refused server left the live one's socket alone.
  TestClient client(path_);
  ASSERT_TRUE(client.Send(Request(1, "echo")));
  ExpectEcho(client, 1, "echo", json::object());
}

TEST_F(SocketServerTest, DestructorUnlinksThePath) {
  auto server = MakeServer(Options());
  ASSERT_TRUE(server);
  ASSERT_TRUE(std::filesystem::exists(path_));
  server.reset();
  EXPECT_FALSE(std::filesystem::exists(path_));
  EXPECT_FALSE(TestClient(path_).connected());
}

TEST_F(SocketServerTest, DestructorLeavesAPathItNoLongerOwns) {
  auto server = MakeServer(Options());
  ASSERT_TRUE(server);
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  { std::ofstream(path_) << "someone else's"; }
  server.reset();
  EXPECT_TRUE(std::filesystem::is_regular_file(path_));
}

TEST_F(SocketServerTest, DestructorClosesOpenConnections) {
  auto loop = StartLoop(Options());
  ASSERT_TRUE(loop);
  TestClient client(path_);
  ASSERT_TRUE(loop->WaitForConnections(1));
  loop.reset();
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(SocketServerTest, RefusesInvalidOptions) {
  SocketServerOptions long_path = Options();
  long_path.path = "/tmp/" + std::string(120, 'p');
  auto server = SocketServer::Create(long_path, TestHandler);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), ErrorCode::kInvalidParameter);

  server = SocketServer::Create(Options(), RequestHandler());
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), ErrorCode::kInvalidParameter);

  SocketServerOptions no_connections = Options();
  no_connections.max_connections = 0;
  EXPECT_FALSE(SocketServer::Create(no_connections, TestHandler).ok());
  EXPECT_FALSE(std::filesystem::exists(path_));
}

// The remaining tests drive Poll() from the test thread, between client calls.

TEST_F(SocketServerTest, PollReturnsWithinItsTimeout) {
  auto server = MakeServer(Options());
  ASSERT_TRUE(server);
  auto start = Clock::now();
  server->Poll(0);
  EXPECT_LT(Clock::now() - start, milliseconds(50));
  start = Clock::now();
  server->Poll(100);
  const auto waited = Clock::now() - start;
  EXPECT_GE(waited, milliseconds(90));
  EXPECT_LT(waited, milliseconds(1000));
}

TEST_F(SocketServerTest, PollWakesForTheIdleDeadline) {
  SocketServerOptions options = Options();
  options.idle_timeout = milliseconds(100);
  auto server = MakeServer(options);
  ASSERT_TRUE(server);
  TestClient client(path_);
  server->Poll(1000);  // accepts
  ASSERT_EQ(server->connection_count(), 1u);
  const auto start = Clock::now();
  while (server->connection_count() == 1 && Clock::now() - start < kClientTimeout) {
    server->Poll(10000);
  }
  EXPECT_EQ(server->connection_count(), 0u);
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(SocketServerTest, InterleavedPollServesARequest) {
  auto server = MakeServer(Options());
  ASSERT_TRUE(server);
  TestClient client(path_);
  ASSERT_TRUE(client.Send(Request(42, "echo", {{"k", "v"}})));
  for (int i = 0; i < 5; ++i) {
    server->Poll(100);
  }
  ExpectEcho(client, 42, "echo", {{"k", "v"}});
  EXPECT_EQ(server->connection_count(), 1u);
}

}  // namespace
}  // namespace fulcrum::ctl
