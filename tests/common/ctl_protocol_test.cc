#include "common/ctl_protocol.h"

#include <algorithm>
#include <string>

#include <gtest/gtest.h>

namespace fulcrum::protocol {
namespace {

using nlohmann::json;

// The encoded line without its '\n', after checking that it is exactly one line.
std::string_view OneLine(const std::string& encoded) {
  EXPECT_FALSE(encoded.empty());
  EXPECT_EQ(encoded.back(), '\n');
  EXPECT_EQ(std::count(encoded.begin(), encoded.end(), '\n'), 1);
  return std::string_view(encoded).substr(0, encoded.size() - 1);
}

json Decode(const std::string& encoded) { return json::parse(OneLine(encoded)); }

void ExpectRefused(std::string_view line, ErrorCode code, std::optional<std::uint64_t> id) {
  ParsedRequest parsed = ParseRequest(line);
  ASSERT_FALSE(parsed.request.ok()) << line;
  EXPECT_EQ(parsed.request.status().code(), code) << parsed.request.status().ToString();
  EXPECT_FALSE(parsed.request.status().message().empty());
  EXPECT_EQ(parsed.id, id) << line;
}

TEST(CtlProtocolTest, RequestRoundTrips) {
  Request request{.id = 7, .cmd = "lb.create", .args = {{"name", "web"}, {"vip", "198.18.100.10"}}};
  const std::string line = EncodeRequest(request);
  ParsedRequest parsed = ParseRequest(OneLine(line));
  ASSERT_TRUE(parsed.request.ok()) << parsed.request.status().ToString();
  EXPECT_EQ(parsed.id, std::optional<std::uint64_t>(7));
  EXPECT_EQ(parsed.request->id, 7u);
  EXPECT_EQ(parsed.request->cmd, "lb.create");
  EXPECT_EQ(parsed.request->args, request.args);
}

TEST(CtlProtocolTest, EncodedRequestCarriesTheVersion) {
  json line = Decode(EncodeRequest({.id = 3, .cmd = "status"}));
  EXPECT_EQ(line["v"], kVersion);
  EXPECT_EQ(line["id"], 3);
  EXPECT_EQ(line["cmd"], "status");
  EXPECT_EQ(line["args"], json::object());
}

TEST(CtlProtocolTest, LargestIdRoundTrips) {
  const std::uint64_t id = UINT64_MAX;
  ParsedRequest parsed = ParseRequest(OneLine(EncodeRequest({.id = id, .cmd = "status"})));
  ASSERT_TRUE(parsed.request.ok());
  EXPECT_EQ(parsed.request->id, id);
}

TEST(CtlProtocolTest, ArgsDefaultToAnEmptyObject) {
  ParsedRequest parsed = ParseRequest(R"({"v": 1, "id": 0, "cmd": "lb.list"})");
  ASSERT_TRUE(parsed.request.ok()) << parsed.request.status().ToString();
  EXPECT_TRUE(parsed.request->args.is_object());
  EXPECT_TRUE(parsed.request->args.empty());
}

TEST(CtlProtocolTest, StringsWithNewlinesStayOnOneLine) {
  Request request{.id = 1, .cmd = "x", .args = {{"text", "a\nb\r\n"}}};
  ParsedRequest parsed = ParseRequest(OneLine(EncodeRequest(request)));
  ASSERT_TRUE(parsed.request.ok());
  EXPECT_EQ(parsed.request->args["text"], "a\nb\r\n");
}

TEST(CtlProtocolTest, MalformedJsonIsRefusedWithoutId) {
  ExpectRefused(R"({"v": 1, "id": 4, "cmd": "status")", ErrorCode::kMalformedRequest, std::nullopt);
  ExpectRefused("hello", ErrorCode::kMalformedRequest, std::nullopt);
  ExpectRefused("", ErrorCode::kMalformedRequest, std::nullopt);
  ExpectRefused("\x01\x02\xff", ErrorCode::kMalformedRequest, std::nullopt);
}

TEST(CtlProtocolTest, InvalidUtf8IsRefused) {
  ExpectRefused("{\"v\": 1, \"id\": 4, \"cmd\": \"st\xff\xfe\"}", ErrorCode::kMalformedRequest,
                std::nullopt);
}

TEST(CtlProtocolTest, NonObjectsAreRefused) {
  ExpectRefused(R"([1, 2, 3])", ErrorCode::kMalformedRequest, std::nullopt);
  ExpectRefused(R"("status")", ErrorCode::kMalformedRequest, std::nullopt);
  ExpectRefused("42", ErrorCode::kMalformedRequest, std::nullopt);
  ExpectRefused("null", ErrorCode::kMalformedRequest, std::nullopt);
}

TEST(CtlProtocolTest, IdMustBeANonNegativeInteger) {
  ExpectRefused(R"({"v": 1, "cmd": "status"})", ErrorCode::kMalformedRequest, std::nullopt);
  ExpectRefused(R"({"v": 1, "id": -1, "cmd": "status"})", ErrorCode::kMalformedRequest,
                std::nullopt);
  ExpectRefused(R"({"v": 1, "id": "7", "cmd": "status"})", ErrorCode::kMalformedRequest,
                std::nullopt);
  ExpectRefused(R"({"v": 1, "id": 7.5, "cmd": "status"})", ErrorCode::kMalformedRequest,
                std::nullopt);
  ExpectRefused(R"({"v": 1, "id": null, "cmd": "status"})", ErrorCode::kMalformedRequest,
                std::nullopt);
}

TEST(CtlProtocolTest, WrongVersionIsUnsupportedAndKeepsTheId) {
  ExpectRefused(R"({"v": 2, "id": 9, "cmd": "status"})", ErrorCode::kUnsupportedVersion, 9);
  ExpectRefused(R"({"v": 0, "id": 9, "cmd": "status"})", ErrorCode::kUnsupportedVersion, 9);
  ExpectRefused(R"({"v": -1, "id": 9, "cmd": "status"})", ErrorCode::kUnsupportedVersion, 9);
}

TEST(CtlProtocolTest, VersionMustBeAnInteger) {
  ExpectRefused(R"({"id": 9, "cmd": "status"})", ErrorCode::kMalformedRequest, 9);
  ExpectRefused(R"({"v": "1", "id": 9, "cmd": "status"})", ErrorCode::kMalformedRequest, 9);
  ExpectRefused(R"({"v": 1.5, "id": 9, "cmd": "status"})", ErrorCode::kMalformedRequest, 9);
}

TEST(CtlProtocolTest, UnknownTopLevelFieldIsRefusedAndNamed) {
  ParsedRequest parsed = ParseRequest(R"({"v": 1, "id": 5, "cmd": "status", "verbose": true})");
  ASSERT_FALSE(parsed.request.ok());
  EXPECT_EQ(parsed.request.status().code(), ErrorCode::kMalformedRequest);
  EXPECT_NE(parsed.request.status().message().find("verbose"), std::string::npos)
      << parsed.request.status().message();
  EXPECT_EQ(parsed.id, std::optional<std::uint64_t>(5));
}

TEST(CtlProtocolTest, CmdMustBeANonEmptyString) {
  ExpectRefused(R"({"v": 1, "id": 5})", ErrorCode::kMalformedRequest, 5);
  ExpectRefused(R"({"v": 1, "id": 5, "cmd": ""})", ErrorCode::kMalformedRequest, 5);
  ExpectRefused(R"({"v": 1, "id": 5, "cmd": 12})", ErrorCode::kMalformedRequest, 5);
}

TEST(CtlProtocolTest, ArgsMustBeAnObject) {
  ExpectRefused(R"({"v": 1, "id": 6, "cmd": "lb.show", "args": ["lb-1"]})",
                ErrorCode::kMalformedRequest, 6);
  ExpectRefused(R"({"v": 1, "id": 6, "cmd": "lb.show", "args": "lb-1"})",
                ErrorCode::kMalformedRequest, 6);
  ExpectRefused(R"({"v": 1, "id": 6, "cmd": "lb.show", "args": null})",
                ErrorCode::kMalformedRequest, 6);
}

// A valid request padded with spaces to exactly `bytes` bytes (without the '\n').
std::string PaddedRequest(std::size_t bytes) {
  std::string line = R"({"v": 1, "id": 1, "cmd": "status"})";
  line.insert(1, bytes - line.size(), ' ');
  return line;
}

TEST(CtlProtocolTest, LineOfExactlyTheLimitIsAccepted) {
  const std::string line = PaddedRequest(kMaxLineBytes - 1);  // plus '\n' = kMaxLineBytes
  ParsedRequest parsed = ParseRequest(line);
  ASSERT_TRUE(parsed.request.ok()) << parsed.request.status().ToString();
  EXPECT_EQ(parsed.request->cmd, "status");
}

TEST(CtlProtocolTest, OversizedLineIsRefused) {
  ExpectRefused(PaddedRequest(kMaxLineBytes), ErrorCode::kRequestTooLarge, std::nullopt);
}

std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(CtlProtocolTest, NestingUpToTheLimitIsAccepted) {
  // The request object is depth 0 and args depth 1, so args may hold kMaxNestingDepth - 1 more.
  const std::string line =
      R"({"v": 1, "id": 2, "cmd": "x", "args": {"a": )" + Nested(kMaxNestingDepth - 1) + "}}";
  ParsedRequest parsed = ParseRequest(line);
  ASSERT_TRUE(parsed.request.ok()) << parsed.request.status().ToString();
}

TEST(CtlProtocolTest, DeeperNestingIsRefused) {
  const std::string line =
      R"({"v": 1, "id": 2, "cmd": "x", "args": {"a": )" + Nested(kMaxNestingDepth) + "}}";
  ExpectRefused(line, ErrorCode::kMalformedRequest, std::nullopt);
}

TEST(CtlProtocolTest, HugeNestingIsRefusedWithoutCrashing) {
  const std::string line = std::string(kMaxLineBytes - 1, '[');
  ExpectRefused(line, ErrorCode::kMalformedRequest, std::nullopt);
  EXPECT_FALSE(ParseResponse(line).result.ok());
}

TEST(CtlProtocolTest, ResultResponseRoundTrips) {
  const json result = {{"id", "lb-0a1b2c3d"}, {"listeners", json::array({"lsn-11223344"})}};
  const std::string line = EncodeResult(7, result);
  json raw = Decode(line);
  EXPECT_EQ(raw["v"], kVersion);
  EXPECT_EQ(raw["id"], 7);
  EXPECT_EQ(raw["ok"], true);

  Response response = ParseResponse(OneLine(line));
  EXPECT_EQ(response.id, std::optional<std::uint64_t>(7));
  ASSERT_TRUE(response.result.ok()) << response.result.status().ToString();
  EXPECT_EQ(*response.result, result);
}

TEST(CtlProtocolTest, ErrorResponseCarriesCodeAndMessage) {
  const Status status(ErrorCode::kPortConflict,
                      "lb-0a1b2c3d already has listener lsn-11223344 on tcp port 80");
  const std::string line = EncodeError(8, status);
  json raw = Decode(line);
  EXPECT_EQ(raw["id"], 8);
  EXPECT_EQ(raw["ok"], false);
  EXPECT_EQ(raw["error"]["code"], "PortConflict");
  EXPECT_EQ(raw["error"]["message"], status.message());
  EXPECT_FALSE(raw.contains("result"));

  Response response = ParseResponse(OneLine(line));
  EXPECT_EQ(response.id, std::optional<std::uint64_t>(8));
  ASSERT_FALSE(response.result.ok());
  EXPECT_EQ(response.result.status().code(), ErrorCode::kPortConflict);
  EXPECT_EQ(response.result.status().message(), status.message());
}

TEST(CtlProtocolTest, NullIdIsWrittenAsJsonNull) {
  json raw = Decode(EncodeError(std::nullopt, Status(ErrorCode::kMalformedRequest, "bad")));
  ASSERT_TRUE(raw.contains("id"));
  EXPECT_TRUE(raw["id"].is_null());
  EXPECT_FALSE(ParseResponse(OneLine(EncodeResult(std::nullopt, json::object()))).id.has_value());
}

TEST(CtlProtocolTest, InvalidUtf8InAMessageIsReplacedNotThrown) {
  const std::string line = EncodeError(1, Status(ErrorCode::kInvalidParameter, "name \xff\xfe"));
  Response response = ParseResponse(OneLine(line));
  ASSERT_FALSE(response.result.ok());
  EXPECT_EQ(response.result.status().code(), ErrorCode::kInvalidParameter);
  EXPECT_EQ(response.result.status().message().rfind("name ", 0), 0u);
}

TEST(CtlProtocolTest, ResultDefaultsToAnEmptyObject) {
  Response response = ParseResponse(R"({"v": 1, "id": 3, "ok": true})");
  ASSERT_TRUE(response.result.ok());
  EXPECT_EQ(*response.result, json::object());
}

void ExpectMalformedResponse(std::string_view line) {
  Response response = ParseResponse(line);
  ASSERT_FALSE(response.result.ok()) << line;
  EXPECT_EQ(response.result.status().code(), ErrorCode::kMalformedRequest) << line;
}

TEST(CtlProtocolTest, GarbageResponsesAreMalformed) {
  ExpectMalformedResponse("");
  ExpectMalformedResponse("garbage");
  ExpectMalformedResponse("[]");
  ExpectMalformedResponse(R"({"v": 1, "id": 1)");
  ExpectMalformedResponse(R"({"v": 1, "id": 1})");
  ExpectMalformedResponse(R"({"v": 1, "id": 1, "ok": "yes"})");
  ExpectMalformedResponse(R"({"v": 1, "id": 1, "ok": false})");
  ExpectMalformedResponse(R"({"v": 1, "id": 1, "ok": false, "error": "PortConflict"})");
}

TEST(CtlProtocolTest, BadErrorFieldsBecomeInternal) {
  for (std::string_view line : {
           R"({"id": 1, "ok": false, "error": {"code": 5, "message": ["x"]}})",
           R"({"id": 1, "ok": false, "error": {"code": "NoSuchCode", "message": "m"}})",
           R"({"id": 1, "ok": false, "error": {"code": "Ok", "message": "m"}})",
           R"({"id": 1, "ok": false, "error": {}})",
       }) {
    Response response = ParseResponse(line);
    ASSERT_FALSE(response.result.ok()) << line;
    EXPECT_EQ(response.result.status().code(), ErrorCode::kInternal) << line;
    EXPECT_FALSE(response.result.status().message().empty()) << line;
    EXPECT_EQ(response.id, std::optional<std::uint64_t>(1));
  }
}

}  // namespace
}  // namespace fulcrum::protocol
