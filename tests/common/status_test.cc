#include "common/status.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace fulcrum {
namespace {

std::vector<ErrorCode> AllErrorCodes() {
  return {
#define FULCRUM_TEST_CODE(name, wire) ErrorCode::name,
      FULCRUM_ERROR_CODES(FULCRUM_TEST_CODE)
#undef FULCRUM_TEST_CODE
  };
}

TEST(ErrorCodeTest, EveryCodeRoundTripsThroughItsWireName) {
  for (ErrorCode code : AllErrorCodes()) {
    const std::string_view name = ErrorCodeName(code);
    std::optional<ErrorCode> parsed = ErrorCodeFromName(name);
    ASSERT_TRUE(parsed.has_value()) << name;
    EXPECT_EQ(*parsed, code) << name;
  }
}

TEST(ErrorCodeTest, WireNamesAreDistinct) {
  std::vector<ErrorCode> codes = AllErrorCodes();
  codes.push_back(ErrorCode::kOk);
  for (std::size_t i = 0; i < codes.size(); ++i) {
    for (std::size_t j = i + 1; j < codes.size(); ++j) {
      EXPECT_NE(ErrorCodeName(codes[i]), ErrorCodeName(codes[j]));
    }
  }
}

TEST(ErrorCodeTest, WireNamesMatchTheProtocolDocument) {
  EXPECT_EQ(ErrorCodeName(ErrorCode::kPortConflict), "PortConflict");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kMalformedRequest), "MalformedRequest");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kRequestTooLarge), "RequestTooLarge");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kUnavailable), "Unavailable");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kOk), "Ok");
}

TEST(ErrorCodeTest, UnknownNamesAreRejected) {
  EXPECT_FALSE(ErrorCodeFromName("").has_value());
  EXPECT_FALSE(ErrorCodeFromName("portconflict").has_value());
  EXPECT_FALSE(ErrorCodeFromName("PortConflict ").has_value());
  EXPECT_FALSE(ErrorCodeFromName("NoSuchCode").has_value());
}

TEST(StatusTest, DefaultIsOk) {
  Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.code(), ErrorCode::kOk);
  EXPECT_EQ(status.ToString(), "Ok");
  EXPECT_TRUE(Status::Ok().ok());
}

TEST(StatusTest, ToStringJoinsCodeAndMessage) {
  Status status(ErrorCode::kPortConflict, "listener port 80/tcp is already used by lsn-0a1b2c3d");
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code(), ErrorCode::kPortConflict);
  EXPECT_EQ(status.message(), "listener port 80/tcp is already used by lsn-0a1b2c3d");
  EXPECT_EQ(status.ToString(),
            "PortConflict: listener port 80/tcp is already used by lsn-0a1b2c3d");
}

TEST(StatusTest, ErrorFormatsItsMessage) {
  Status status =
      Error(ErrorCode::kLimitExceeded, "{} has {} backends (limit {})", "sg-1", 1024, 1024);
  EXPECT_EQ(status.code(), ErrorCode::kLimitExceeded);
  EXPECT_EQ(status.message(), "sg-1 has 1024 backends (limit 1024)");
}

Status FailsWhen(bool fail) {
  if (fail) {
    return Error(ErrorCode::kIoError, "cannot write {}", "/var/lib/lbd/state.json");
  }
  return Status::Ok();
}

int steps_run = 0;

Status TwoSteps(bool fail_first) {
  FULCRUM_RETURN_IF_ERROR(FailsWhen(fail_first));
  ++steps_run;
  return Status::Ok();
}

TEST(StatusTest, ReturnIfErrorStopsAtTheFirstFailure) {
  steps_run = 0;
  Status failed = TwoSteps(true);
  EXPECT_EQ(failed.code(), ErrorCode::kIoError);
  EXPECT_EQ(failed.message(), "cannot write /var/lib/lbd/state.json");
  EXPECT_EQ(steps_run, 0);

  EXPECT_TRUE(TwoSteps(false).ok());
  EXPECT_EQ(steps_run, 1);
}

Result<int> ParsePort(int value) {
  if (value < 0 || value > 65535) {
    return Error(ErrorCode::kInvalidParameter, "port {} is out of range 0..65535", value);
  }
  return value;
}

TEST(ResultTest, HoldsAValue) {
  Result<int> port = ParsePort(80);
  ASSERT_TRUE(port.ok());
  EXPECT_TRUE(port.status().ok());
  EXPECT_EQ(*port, 80);
  EXPECT_EQ(port.value(), 80);
}

TEST(ResultTest, HoldsAnError) {
  Result<int> port = ParsePort(70000);
  ASSERT_FALSE(port.ok());
  EXPECT_EQ(port.status().code(), ErrorCode::kInvalidParameter);
  EXPECT_EQ(port.status().message(), "port 70000 is out of range 0..65535");
}

TEST(ResultTest, ValueCanBeMovedOutAndAccessedThroughArrow) {
  Result<std::string> name(std::string("web"));
  EXPECT_EQ(name->size(), 3u);
  std::string taken = std::move(name).value();
  EXPECT_EQ(taken, "web");
}

TEST(ResultTest, AnOkStatusWithoutValueIsAnInternalError) {
  Result<int> broken(Status::Ok());
  EXPECT_FALSE(broken.ok());
  EXPECT_FALSE(broken.status().ok());
  EXPECT_EQ(broken.status().code(), ErrorCode::kInternal);
}

}  // namespace
}  // namespace fulcrum
