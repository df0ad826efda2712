#include "ctl/cli/table.h"

#include <algorithm>
#include <utility>

namespace fulcrum::cli {
namespace {

void AppendLine(const std::vector<std::string>& cells, const std::vector<std::size_t>& widths,
                const std::vector<Table::Column>& columns, std::string* out) {
  std::string line;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    const std::size_t pad = widths[i] - DisplayWidth(cells[i]);
    if (i > 0) {
      line += "  ";
    }
    if (columns[i].align == Table::Align::kRight) {
      line.append(pad, ' ');
      line += cells[i];
    } else {
      line += cells[i];
      line.append(pad, ' ');
    }
  }
  while (!line.empty() && line.back() == ' ') {
    line.pop_back();
  }
  *out += line;
  *out += '\n';
}

}  // namespace

std::size_t DisplayWidth(const std::string& text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

Table::Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(columns_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<std::string> header;
  std::vector<std::size_t> widths;
  for (const Column& column : columns_) {
    header.push_back(column.title);
    widths.push_back(DisplayWidth(column.title));
  }
  for (const auto& row : rows_) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], DisplayWidth(row[i]));
    }
  }
  std::string out;
  AppendLine(header, widths, columns_, &out);
  for (const auto& row : rows_) {
    AppendLine(row, widths, columns_, &out);
  }
  return out;
}

}  // namespace fulcrum::cli
