#include "common/state_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "common/model.h"

namespace fulcrum {
namespace {

using nlohmann::json;

class StateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/fulcrum-state-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/state.json";
  }
  void TearDown() override {
    chmod(dir_.c_str(), 0700);
    std::filesystem::remove_all(dir_);
  }

  static void WriteRaw(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  static std::string ReadRaw(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  void ExpectCorrupt(const std::string& text, const std::string& word) {
    WriteRaw(path_, text);
    Result<std::optional<json>> read = ReadStateFile(path_);
    ASSERT_FALSE(read.ok()) << "accepted: " << text.substr(0, 80);
    EXPECT_EQ(read.status().code(), ErrorCode::kCorruptState) << read.status().ToString();
    const std::string& message = read.status().message();
    EXPECT_NE(message.find(path_), std::string::npos) << message;
    EXPECT_NE(message.find(word), std::string::npos) << "'" << word << "' not in: " << message;
    EXPECT_NE(message.find("refuses to start"), std::string::npos) << message;
  }

  std::string dir_;
  std::string path_;
};

const json kPayload = {{"lbs", json::array()}, {"answer", 42}, {"nested", {{"a", {1, 2}}}}};

TEST_F(StateFileTest, MissingFileReadsAsNothing) {
  Result<std::optional<json>> read = ReadStateFile(path_);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_FALSE(read->has_value());
}

TEST_F(StateFileTest, RoundTripsWithAFormatHeader) {
  ASSERT_TRUE(WriteStateFile(path_, kPayload).ok());
  const json on_disk = json::parse(ReadRaw(path_));
  EXPECT_EQ(on_disk["format"], "fulcrum-state");
  EXPECT_EQ(on_disk["version"], 1);
  EXPECT_EQ(on_disk["answer"], 42);
  EXPECT_FALSE(std::filesystem::exists(StateFileTempPath(path_)));

  Result<std::optional<json>> read = ReadStateFile(path_);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ(**read, kPayload);

  json second = kPayload;
  second["answer"] = 43;
  ASSERT_TRUE(WriteStateFile(path_, second).ok());
  EXPECT_EQ(**ReadStateFile(path_), second);
}

TEST_F(StateFileTest, CreatesMissingDirectories) {
  const std::string deep = dir_ + "/var/lib/lbd/state.json";
  ASSERT_TRUE(WriteStateFile(deep, kPayload).ok());
  struct stat info {};
  ASSERT_EQ(stat((dir_ + "/var/lib/lbd").c_str(), &info), 0);
  const mode_t mask = umask(0);
  umask(mask);
  EXPECT_EQ(info.st_mode & 0777, 0750 & ~mask);
  EXPECT_EQ(**ReadStateFile(deep), kPayload);
}

TEST_F(StateFileTest, RefusesAPayloadThatWouldShadowTheHeader) {
  EXPECT_EQ(WriteStateFile(path_, json{{"format", "x"}}).code(), ErrorCode::kInternal);
  EXPECT_EQ(WriteStateFile(path_, json::array()).code(), ErrorCode::kInternal);
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(StateFileTest, CrashBetweenWriteAndRenameKeepsTheOldState) {
  ASSERT_TRUE(WriteStateFile(path_, kPayload).ok());
  // What a crash after the temp file's write and before the rename leaves behind: a complete
  // newer state, or a half-written one. Neither is authoritative.
  for (const std::string& leftover :
       {std::string(R"({"format": "fulcrum-state", "version": 1, "answer": 99})"),
        std::string(R"({"format": "fulcrum-sta)")}) {
    WriteRaw(StateFileTempPath(path_), leftover);
    Result<std::optional<json>> read = ReadStateFile(path_);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_EQ(**read, kPayload);
    EXPECT_FALSE(std::filesystem::exists(StateFileTempPath(path_)));
  }
}

TEST_F(StateFileTest, CrashBeforeTheFirstRenameMeansNoState) {
  WriteRaw(StateFileTempPath(path_), R"({"format": "fulcrum-state", "version": 1})");
  Result<std::optional<json>> read = ReadStateFile(path_);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_FALSE(read->has_value());
  EXPECT_FALSE(std::filesystem::exists(StateFileTempPath(path_)));
}

TEST_F(StateFileTest, RefusesCorruptFiles) {
  ASSERT_TRUE(WriteStateFile(path_, kPayload).ok());
  const std::string good = ReadRaw(path_);
  ExpectCorrupt(good.substr(0, good.size() / 2), "not valid JSON");
  ExpectCorrupt(
      "\x7f"
      "ELF garbage \x01\x02",
      "not valid JSON");
  ExpectCorrupt(good + "}", "not valid JSON");
  ExpectCorrupt("", "empty");
  ExpectCorrupt(" \n", "empty");
  ExpectCorrupt("[1, 2]", "JSON object");
  ExpectCorrupt(R"({"version": 1, "lbs": []})", "format");
  ExpectCorrupt(R"({"format": "haproxy", "version": 1})", "format");
  ExpectCorrupt(R"({"format": "fulcrum-state", "version": 2})", "version 2");
  ExpectCorrupt(R"({"format": "fulcrum-state", "version": "1"})", "version");
  ExpectCorrupt(R"({"format": "fulcrum-state"})", "version");
  ExpectCorrupt(R"({"format": "fulcrum-state", "version": 1, "x": )" + std::string(100, '[') +
                    std::string(100, ']') + "}",
                "deeper");
}

TEST_F(StateFileTest, ValidJsonThatFailsModelValidationIsCorrupt) {
  model::Model model;
  ASSERT_TRUE(model.CreateLb("lb-00000001", "web", *IpAddress::Parse("198.18.100.10"), 0).ok());
  json payload = model.ToJson();
  payload["lbs"][0]["vip"] = "198.18.100.300";
  ASSERT_TRUE(WriteStateFile(path_, payload).ok());
  Result<std::optional<json>> read = ReadStateFile(path_);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  Result<model::Model> loaded = model::Model::FromJson(**read);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), ErrorCode::kCorruptState);
  EXPECT_NE(loaded.status().message().find("lbs[0].vip"), std::string::npos)
      << loaded.status().message();
}

TEST_F(StateFileTest, UnwritableLocationsAreIoErrorsAndKeepTheOldFile) {
  // A path component that is a regular file.
  WriteRaw(dir_ + "/not-a-dir", "x");
  Status status = WriteStateFile(dir_ + "/not-a-dir/state.json", kPayload);
  EXPECT_EQ(status.code(), ErrorCode::kIoError) << status.ToString();
  EXPECT_NE(status.message().find("not-a-dir"), std::string::npos) << status.message();

  // A target that cannot be replaced by a file: the rename fails, the temp file goes away.
  std::filesystem::create_directory(dir_ + "/occupied.json");
  status = WriteStateFile(dir_ + "/occupied.json", kPayload);
  EXPECT_EQ(status.code(), ErrorCode::kIoError) << status.ToString();
  EXPECT_NE(status.message().find("rename"), std::string::npos) << status.message();
  EXPECT_FALSE(std::filesystem::exists(StateFileTempPath(dir_ + "/occupied.json")));
}

TEST_F(StateFileTest, ReadOnlyDirectoryIsAnIoError) {
  if (geteuid() == 0) {
    GTEST_SKIP() << "root ignores directory permissions";
  }
  ASSERT_TRUE(WriteStateFile(path_, kPayload).ok());
  ASSERT_EQ(chmod(dir_.c_str(), 0500), 0);
  json changed = kPayload;
  changed["answer"] = 7;
  const Status status = WriteStateFile(path_, changed);
  EXPECT_EQ(status.code(), ErrorCode::kIoError) << status.ToString();
  EXPECT_NE(status.message().find("Permission denied"), std::string::npos) << status.message();
  ASSERT_EQ(chmod(dir_.c_str(), 0700), 0);
  EXPECT_EQ(**ReadStateFile(path_), kPayload);
}

}  // namespace
}  // namespace fulcrum
