// A CPU allocator that hands freed large blocks out again, for forwards without gradients.
//
// PyTorch's default CPU allocator asks the C library for every tensor, and the C library maps
// large blocks afresh and returns them on free: each page of a new tensor is then a page fault and
// a page cleared by the kernel (on a virtual machine that returns freed pages to its host, a large
// share of a forward's time). Between `memory_cache_enter()` and the matching
// `memory_cache_leave()` (calls nest; the outermost ones count) this allocator is PyTorch's CPU
// allocator: a request of at least kMinBytes takes the smallest kept block that holds it and is
// at most a quarter larger, else a new block from the previous allocator; smaller requests go to
// the previous allocator unchanged. A freed block is kept for later requests (also when it is
// freed after the leave) until `memory_cache_release()` frees every kept block; blocks in use
// then go back to the C library when they are freed, until the next enter. A block is never
// handed out while a tensor holds it: only freed blocks are kept. `memory_cache_stats()` is
// [installed now, bytes kept, blocks in use]. Thread-safe (one lock); the object lives until the
// process ends (blocks may be freed during interpreter shutdown).
#include <c10/core/CPUAllocator.h>
#include <torch/library.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace {

// Requests below this size go to the previous allocator: the C library keeps small blocks itself.
constexpr size_t kMinBytes = size_t(1) << 20;

class MemoryCache final : public c10::Allocator {
 public:
  static MemoryCache& instance() {
    static MemoryCache* cache = new MemoryCache();  // never destroyed: blocks outlive static teardown
    return *cache;
  }

  c10::DataPtr allocate(size_t bytes) override {
    if (bytes < kMinBytes) return previous_->allocate(bytes);
    std::unique_lock<std::mutex> lock(mutex_);
    Block* block = nullptr;
    auto kept = kept_.lower_bound(bytes);
    if (kept != kept_.end() && kept->first - bytes <= bytes / 4) {
      block = kept->second;
      kept_.erase(kept);
      kept_bytes_ -= block->bytes;
    } else {
      c10::Allocator* previous = previous_;
      lock.unlock();  // the C library's allocation can take long (page faults): not under the lock
      block = new Block{previous->allocate(bytes), bytes};
      lock.lock();
    }
    void* data = block->memory.get();
    in_use_.emplace(data, block);
    // context = data, so that raw_allocate/raw_deallocate (oneDNN's scratch memory) work too
    return {data, data, &MemoryCache::free, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &MemoryCache::free; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  int64_t enter() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (depth_++ == 0) {
      keeping_ = true;
      c10::Allocator* current = c10::GetCPUAllocator();
      if (current != this) {
        previous_ = current;
        c10::SetCPUAllocator(this, 0);
      }
      // another allocator registered with a higher priority stays in place: nothing is cached then
      installed_ = c10::GetCPUAllocator() == this;
    }
    return depth_;
  }

  int64_t leave() {
    std::lock_guard<std::mutex> lock(mutex_);
    TORCH_CHECK(depth_ > 0, "memory_cache_leave() without memory_cache_enter()");
    if (--depth_ == 0 && installed_) {
      if (c10::GetCPUAllocator() == this) c10::SetCPUAllocator(previous_, 0);
      installed_ = false;
    }
    return depth_;
  }

  void release() {
    std::vector<Block*> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& entry : kept_) blocks.push_back(entry.second);
      kept_.clear();
      kept_bytes_ = 0;
      keeping_ = depth_ > 0;
    }
    for (Block* block : blocks) delete block;  // the previous allocator's deleter frees the memory
  }

  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {installed_ ? 1 : 0, static_cast<int64_t>(kept_bytes_), static_cast<int64_t>(in_use_.size())};
  }

 private:
  struct Block {
    c10::DataPtr memory;  // from the previous allocator, freed with it
    size_t bytes;
  };

  MemoryCache() : previous_(c10::GetCPUAllocator()) {}

  static void free(void* data) {
    MemoryCache& cache = instance();
    std::unique_lock<std::mutex> lock(cache.mutex_);
    auto found = cache.in_use_.find(data);
    if (found == cache.in_use_.end()) {
      // a small block, given by the previous allocator, freed through raw_deleter()
      c10::DeleterFnPtr previous = cache.previous_->raw_deleter();
      lock.unlock();
      TORCH_INTERNAL_ASSERT(previous != nullptr, "the previous CPU allocator frees no raw pointers");
      previous(data);
      return;
    }
    Block* block = found->second;
    cache.in_use_.erase(found);
    if (cache.keeping_) {
      cache.kept_.emplace(block->bytes, block);
      cache.kept_bytes_ += block->bytes;
      return;
    }
    lock.unlock();
    delete block;
  }

  std::mutex mutex_;
  c10::Allocator* previous_;
  std::multimap<size_t, Block*> kept_;
  std::unordered_map<void*, Block*> in_use_;
  size_t kept_bytes_ = 0;
  int64_t depth_ = 0;
  bool installed_ = false;
  bool keeping_ = false;
};

int64_t memory_cache_enter() { return MemoryCache::instance().enter(); }
int64_t memory_cache_leave() { return MemoryCache::instance().leave(); }
void memory_cache_release() { MemoryCache::instance().release(); }
std::vector<int64_t> memory_cache_stats() { return MemoryCache::instance().stats(); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(nnunet_deconver_cpp, m) {
  m.def("memory_cache_enter() -> int", &memory_cache_enter);
  m.def("memory_cache_leave() -> int", &memory_cache_leave);
  m.def("memory_cache_release() -> ()", &memory_cache_release);
  m.def("memory_cache_stats() -> int[]", &memory_cache_stats);
}
