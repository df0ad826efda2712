// A slot-indexed array that configuration snapshots share page by page.
//
// Theory of operation: a snapshot names listeners and backends by stable slot
// (dataplane/slots.h), and a worker reads them by slot per packet. A compile that changes a few
// listeners must not copy an array as long as the whole configuration, so the array is cut into
// pages of kPageSize values held by shared pointers: copying it copies the page pointers, and
// Mutable copies a page only while another array still holds it (copy on write). A published
// array is never written: the compile that copies it owns every page it has written to since.
// Reading a slot is one more dependent load than a flat array (the page), and no branch beyond
// the bounds check a flat array needs too.
//
// Threads: built, copied and freed by the control thread (retired snapshots are freed there
// after a grace period), so a page's reference count changes on that thread alone and Mutable's
// use_count test is exact; workers only read (Find, at).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

namespace fulcrum::dataplane {

template <typename T>
class PagedSlots {
 public:
  static constexpr std::uint32_t kPageShift = 8;
  static constexpr std::uint32_t kPageSize = 1u << kPageShift;

  // The value in `slot`, or nullptr when no page holds the slot.
  const T* Find(std::uint32_t slot) const {
    const std::uint32_t page = slot >> kPageShift;
    return page < pages_.size() ? &pages_[page]->items[slot & (kPageSize - 1)] : nullptr;
  }
  // The value in `slot`, which a page must hold (a slot that Mutable has written).
  const T& at(std::uint32_t slot) const {
    return pages_[slot >> kPageShift]->items[slot & (kPageSize - 1)];
  }

  // Control thread: the value in `slot` to change, its page added (default values) or made
  // this array's own first.
  T& Mutable(std::uint32_t slot) {
    const std::uint32_t page = slot >> kPageShift;
    while (pages_.size() <= page) {
      pages_.push_back(std::make_shared<Page>());
    }
    if (pages_[page].use_count() > 1) {
      pages_[page] = std::make_shared<Page>(*pages_[page]);
    }
    return pages_[page]->items[slot & (kPageSize - 1)];
  }

  // One past the last slot a page holds.
  std::uint32_t end() const { return static_cast<std::uint32_t>(pages_.size()) * kPageSize; }

  // fn(slot, value) for every slot a page holds, in slot order.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (std::uint32_t slot = 0; slot < end(); ++slot) {
      fn(slot, at(slot));
    }
  }

 private:
  struct Page {
    std::array<T, kPageSize> items{};
  };
  std::vector<std::shared_ptr<Page>> pages_;
};

}  // namespace fulcrum::dataplane
