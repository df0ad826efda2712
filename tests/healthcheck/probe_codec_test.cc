#include "healthcheck/probe_codec.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace fulcrum::hc {
namespace {

using namespace std::string_literals;

// ---- hex

TEST(DecodeHexTest, DecodesBothCases) {
  Result<std::string> bytes = DecodeHex("00ff7F41");
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(*bytes, "\x00\xff\x7f\x41"s);
}

TEST(DecodeHexTest, EmptyIsEmpty) {
  Result<std::string> bytes = DecodeHex("");
  ASSERT_TRUE(bytes.ok());
  EXPECT_TRUE(bytes->empty());
}

TEST(DecodeHexTest, RefusesOddLength) {
  Result<std::string> bytes = DecodeHex("abc");
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(bytes.status().code(), ErrorCode::kInvalidParameter);
  EXPECT_NE(bytes.status().message().find("even"), std::string::npos);
}

TEST(DecodeHexTest, RefusesNonHexDigitAndNamesIt) {
  Result<std::string> bytes = DecodeHex("12g4");
  ASSERT_FALSE(bytes.ok());
  EXPECT_NE(bytes.status().message().find("'g' at offset 2"), std::string::npos)
      << bytes.status().message();
  EXPECT_FALSE(DecodeHex("0x12").ok());
  EXPECT_FALSE(DecodeHex("1 ").ok());
}

// ---- udp matching

TEST(UdpReplyMatchesTest, PrefixMatch) {
  EXPECT_TRUE(UdpReplyMatches("PONG", "PONG"));
  EXPECT_TRUE(UdpReplyMatches("PONG 1795000000", "PONG"));
  EXPECT_FALSE(UdpReplyMatches("PON", "PONG"));
  EXPECT_FALSE(UdpReplyMatches("PING", "PONG"));
  EXPECT_FALSE(UdpReplyMatches("", "PONG"));
}

TEST(UdpReplyMatchesTest, EmptyExpectationAcceptsAnyReply) {
  EXPECT_TRUE(UdpReplyMatches("anything", ""));
  EXPECT_TRUE(UdpReplyMatches("", ""));
}

TEST(UdpReplyMatchesTest, BinaryBytesWithZeros) {
  Result<std::string> expect = DecodeHex("0001ff");
  ASSERT_TRUE(expect.ok());
  EXPECT_TRUE(UdpReplyMatches("\x00\x01\xff\x10"s, *expect));
  EXPECT_FALSE(UdpReplyMatches("\x00\x02\xff"s, *expect));
}

// ---- http status classes

TEST(StatusClassesTest, TwoAndThreeHundreds) {
  Result<StatusClassSet> classes = ParseStatusClasses({"2xx", "3xx"});
  ASSERT_TRUE(classes.ok());
  EXPECT_TRUE(StatusAccepted(*classes, 200));
  EXPECT_TRUE(StatusAccepted(*classes, 204));
  EXPECT_TRUE(StatusAccepted(*classes, 302));
  EXPECT_FALSE(StatusAccepted(*classes, 404));
  EXPECT_FALSE(StatusAccepted(*classes, 500));
  EXPECT_FALSE(StatusAccepted(*classes, 101));
}

TEST(StatusClassesTest, OutOfRangeStatusesNeverPass) {
  Result<StatusClassSet> classes = ParseStatusClasses({"1xx", "2xx", "3xx", "4xx", "5xx"});
  ASSERT_TRUE(classes.ok());
  EXPECT_TRUE(StatusAccepted(*classes, 100));
  EXPECT_TRUE(StatusAccepted(*classes, 599));
  EXPECT_FALSE(StatusAccepted(*classes, 99));
  EXPECT_FALSE(StatusAccepted(*classes, 600));
  EXPECT_FALSE(StatusAccepted(*classes, 0));
}

TEST(StatusClassesTest, RefusesBadCodes) {
  EXPECT_FALSE(ParseStatusClasses({}).ok());
  EXPECT_FALSE(ParseStatusClasses({"6xx"}).ok());
  EXPECT_FALSE(ParseStatusClasses({"200"}).ok());
  EXPECT_FALSE(ParseStatusClasses({"2XX"}).ok());
  EXPECT_FALSE(ParseStatusClasses({"2xx", "0xx"}).ok());
}

// ---- status lines

StatusLine Parse(const std::string& text, bool eof = false) { return ParseStatusLine(text, eof); }

TEST(StatusLineTest, CompleteLines) {
  EXPECT_EQ(Parse("HTTP/1.1 200 OK\r\n").status, 200);
  EXPECT_EQ(Parse("HTTP/1.1 200 OK\r\n").kind, StatusLine::Kind::kComplete);
  EXPECT_EQ(Parse("HTTP/1.0 302 Found\r\nLocation: /x\r\n").status, 302);
  EXPECT_EQ(Parse("HTTP/1.1 404\r\n").status, 404);  // no reason phrase
  EXPECT_EQ(Parse("HTTP/1.1 500\n").status, 500);    // bare LF
  EXPECT_EQ(Parse("HTTP/1.1 503 ").status, 503);     // the rest not here yet
}

TEST(StatusLineTest, ShortPrefixesAreIncomplete) {
  EXPECT_EQ(Parse("").kind, StatusLine::Kind::kIncomplete);
  EXPECT_EQ(Parse("HTT").kind, StatusLine::Kind::kIncomplete);
  EXPECT_EQ(Parse("HTTP/1.1 20").kind, StatusLine::Kind::kIncomplete);
  EXPECT_EQ(Parse("HTTP/1.1 200").kind, StatusLine::Kind::kIncomplete);
}

TEST(StatusLineTest, EndOfStreamDecides) {
  EXPECT_EQ(Parse("HTTP/1.1 200", true).kind, StatusLine::Kind::kComplete);
  EXPECT_EQ(Parse("HTTP/1.1 200", true).status, 200);
  EXPECT_EQ(Parse("HTTP/1.1 20", true).kind, StatusLine::Kind::kMalformed);
  EXPECT_EQ(Parse("HTT", true).kind, StatusLine::Kind::kMalformed);
}

TEST(StatusLineTest, MalformedLines) {
  EXPECT_EQ(Parse("SSH-2.0-OpenSSH_9.2\r\n").kind, StatusLine::Kind::kMalformed);
  EXPECT_EQ(Parse("garbage").kind, StatusLine::Kind::kMalformed);
  EXPECT_EQ(Parse("HTTP/2 200 OK\r\n").kind, StatusLine::Kind::kMalformed);
  EXPECT_EQ(Parse("HTTP/1.1 2x0 OK\r\n").kind, StatusLine::Kind::kMalformed);
  EXPECT_EQ(Parse("HTTP/1.1  200 OK\r\n").kind, StatusLine::Kind::kMalformed);
  EXPECT_EQ(Parse("HTTP/1.1 2000 OK\r\n").kind, StatusLine::Kind::kMalformed);
  EXPECT_EQ(Parse("http/1.1 200 OK\r\n").kind, StatusLine::Kind::kMalformed);
  EXPECT_EQ(Parse("HTTP/1.1 099 Low\r\n").kind, StatusLine::Kind::kMalformed);
  EXPECT_EQ(Parse("HTTP/1.1 600 High\r\n").kind, StatusLine::Kind::kMalformed);
  // Judged as soon as one byte is wrong, without waiting for more.
  EXPECT_EQ(Parse("X").kind, StatusLine::Kind::kMalformed);
}

// ---- requests

TEST(HttpRequestTest, ExactBytes) {
  EXPECT_EQ(BuildHttpRequest("/healthz", "web.example"),
            "GET /healthz HTTP/1.1\r\nHost: web.example\r\nConnection: close\r\n"
            "User-Agent: fulcrum-healthd\r\n\r\n");
}

TEST(HttpRequestTest, HostDefaultsToTheBackendAddress) {
  Result<IpAddress> v4 = IpAddress::Parse("198.18.1.11");
  Result<IpAddress> v6 = IpAddress::Parse("2001:db8::11");
  ASSERT_TRUE(v4.ok() && v6.ok());
  EXPECT_EQ(HttpHost("", *v4), "198.18.1.11");
  EXPECT_EQ(HttpHost("", *v6), "[2001:db8::11]");
  EXPECT_EQ(HttpHost("api.example", *v4), "api.example");
}

// ---- reasons

TEST(ReasonTest, ErrnoValuesAreToldApart) {
  EXPECT_EQ(ReasonForErrno(ECONNREFUSED), "refused");
  EXPECT_EQ(ReasonForErrno(ECONNRESET), "reset");
  EXPECT_EQ(ReasonForErrno(EPIPE), "reset");
  EXPECT_EQ(ReasonForErrno(ETIMEDOUT), "timeout");
  EXPECT_EQ(ReasonForErrno(ENETUNREACH), "network unreachable");
  EXPECT_EQ(ReasonForErrno(EHOSTUNREACH), "host unreachable");
  EXPECT_EQ(ReasonForErrno(EPERM), "not permitted");
  const std::string other = ReasonForErrno(EPROTO);
  EXPECT_EQ(other.rfind("error: ", 0), 0u) << other;
  EXPECT_GT(other.size(), 7u);
}

TEST(ReasonTest, LocalErrorsAreNotTheBackendsFault) {
  EXPECT_TRUE(IsLocalError(EMFILE));
  EXPECT_TRUE(IsLocalError(ENFILE));
  EXPECT_TRUE(IsLocalError(ENOBUFS));
  EXPECT_TRUE(IsLocalError(EADDRNOTAVAIL));
  EXPECT_FALSE(IsLocalError(ECONNREFUSED));
  EXPECT_FALSE(IsLocalError(ENETUNREACH));
  EXPECT_FALSE(IsLocalError(ECONNRESET));
}

}  // namespace
}  // namespace fulcrum::hc
