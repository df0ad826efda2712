// A small aligned-table formatter for lbctl's human output.
//
// Columns are padded to their widest cell (counted in UTF-8 code points, so a reason string
// with non-ASCII text still lines up) and separated by two spaces. Lines never end in spaces:
// the last column is not padded. Numeric columns can be right-aligned so that digits line up.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace fulcrum::cli {

class Table {
 public:
  enum class Align { kLeft, kRight };

  struct Column {
    std::string title;
    Align align = Align::kLeft;
  };

  explicit Table(std::vector<Column> columns);

  // A row with fewer cells than columns is padded with empty cells; extra cells are dropped.
  void AddRow(std::vector<std::string> cells);

  std::size_t rows() const { return rows_.size(); }

  // The header line and one line per row, each ending in '\n'.
  std::string Render() const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// Display width of a UTF-8 string, in code points.
std::size_t DisplayWidth(const std::string& text);

}  // namespace fulcrum::cli
