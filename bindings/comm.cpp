// The communicator of a data-parallel run: MPI (opened at run time, mpi.h) driven by one native thread, and NCCL (in
// libmae_cuda.so, native/cuda/nccl.h) for the gradients of GPU ranks.
//
// The communication thread makes every MPI call of the process (MPI_THREAD_FUNNELED: it also calls MPI_Init_thread).
// JavaScript queues work on it and waits for tickets:
//   commAllreduceGrads(grads, bf16, what) -> ticket   a bucket of gradients to average over the ranks. CPU tensors:
//       the thread packs them into one float32 buffer, runs MPI_Iallreduce(sum) in place and writes buffer / size
//       back, while the JavaScript thread goes on with backward. CUDA tensors: queued at once on NCCL's stream after
//       the device stream's work so far (nccl.h); the thread only watches them.
//   commWait(ticket) -> [startMs, endMs]               blocks until that bucket is averaged (CUDA: orders the device
//       stream after it), and says when the thread worked on it (commNow's clock), for the overlap measurement.
//   commAllreduce(Float64Array, 'sum' | 'max'), commBroadcast(bytes | null, root), commAllgather(bytes),
//   commBarrier(): small blocking collectives (losses, stop flags, configs, checkpoints, features).
// Every wait is bounded: the thread polls each nonblocking MPI request (MPI_Test, which also makes Open MPI progress),
// naps 20 us between polls, and gives up after the timeout of commInit with an error naming what did not complete
// (and tells the other ranks, as commFail does).
// Between polls, and every 20 ms when idle, it also probes a duplicate of MPI_COMM_WORLD for failure messages:
//   commFail(message)  a rank whose run throws tells every other rank why (and waits up to 5 s for their
//                      acknowledgements); they print "rank R failed: message" at once, and their next call throws it.
// After a failure or a timeout every call throws the same error (it is sticky); commAbort(code) ends the whole job
// (MPI_Abort), commFinalize() ends MPI at the end of a good run (after a barrier, also bounded).
#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "../native/cuda/nccl.h"
#include "check.h"
#include "cuda_loader.h"
#include "mpi.h"

namespace mae {

namespace {

constexpr int TAG_FAIL = 17001;
constexpr double kMaxTimeoutSeconds = 1e9;
constexpr int TAG_ACK = 17002;

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

void nap() { std::this_thread::sleep_for(std::chrono::microseconds(20)); }

struct Job {
  enum Kind { GRADS, ALLREDUCE, BCAST, ALLGATHER, BARRIER, FINALIZE } kind;
  std::string what;
  // GRADS (CPU): float32 gradients, averaged in place
  std::vector<std::shared_ptr<Storage>> grads;
  // ALLREDUCE: values in place; BCAST: bytes (root's in, everyone's out); ALLGATHER: bytes in, gathered out
  std::vector<double> values;
  bool max = false;
  std::vector<uint8_t> bytes;
  std::vector<std::vector<uint8_t>> gathered;
  int root = 0;
  double start_ms = 0, end_ms = 0;
  bool done = false, ok = false;
};

// A bucket of CUDA gradients on NCCL: started by JavaScript's thread, watched (and released) by the comm thread.
struct NcclJob {
  MaeNcclWork* work = nullptr;
  std::vector<std::shared_ptr<Storage>> keep;  // the gradients' memory, alive until released
  std::string what;
  double start_ms = 0;
  bool finished = false;  // commWait queued the unpack
};

struct State {
  std::mutex mu;
  std::condition_variable wake;  // the comm thread: new work
  std::condition_variable done;  // waiters: a job finished, init finished, or a failure
  std::deque<std::shared_ptr<Job>> queue;
  std::map<int64_t, std::shared_ptr<Job>> jobs;  // by ticket, until waited for
  std::map<int64_t, std::shared_ptr<NcclJob>> nccl_jobs;
  int64_t next_ticket = 1;
  std::thread thread;
  bool started = false, ready = false, finalized = false;
  std::string error;  // sticky: set once, by the first failure
  std::atomic<bool> failed{false};
  std::string fail_message;  // commFail's text, for the thread to announce
  bool fail_requested = false, fail_announced = false;
  std::atomic<double> timeout_s{600};
  int rank = 0, size = 1, local_rank = 0, local_size = 1, provided = 0;
  mpi::Comm ctrl = nullptr;
  std::vector<float> buffer;  // the packed bucket
  // NCCL (GPU ranks)
  const MaeNcclApi* nccl = nullptr;
  MaeNcclComm* nccl_comm = nullptr;
  int nccl_device = -1;
};

// never destroyed: the thread may still run while the process exits
State& S() {
  static State* s = new State();
  return *s;
}

std::string rank_str(int r) { return "rank " + std::to_string(r); }

// Records the first failure (caller holds mu) and wakes every waiter; a CUDA communicator is aborted so that a device
// stream waiting on its work goes on.
void set_error_locked(State& s, const std::string& e) {
  if (s.failed.load()) return;
  s.error = e;
  s.failed = true;
  if (s.nccl_comm && s.nccl) {
    try {
      s.nccl->abort(s.nccl_comm);
    } catch (const std::exception&) {
    }
  }
  s.done.notify_all();
}

void set_error(State& s, const std::string& e) {
  std::lock_guard<std::mutex> lock(s.mu);
  set_error_locked(s, e);
}

// This rank fails because of `cause` (caller holds mu): the comm thread tells every other rank, then records
// "rank R failed: cause" as the run's error.
void fail_locally_locked(State& s, const std::string& cause) {
  if (s.failed.load() || s.fail_requested) return;
  s.fail_message = cause;
  s.fail_requested = true;
  s.wake.notify_one();
}

void fail_locally(State& s, const std::string& cause) {
  std::lock_guard<std::mutex> lock(s.mu);
  fail_locally_locked(s, cause);
}

std::string timeout_text(const std::string& what, double seconds) {
  return what + " did not complete within " + std::to_string((int)seconds) +
         " s (the distributed timeout, --dist-timeout): another rank is stuck, has died or is far behind";
}

void check_mpi(int rc, const char* call, const std::string& what) {
  if (rc != mpi::SUCCESS) throw Error(std::string(call) + " failed for " + what + ": " + mpi::error_string(rc));
}

// A peer's failure message, if one has arrived: prints it, acknowledges it, and records it as this run's error.
bool receive_failure() {
  State& s = S();
  const mpi::Api& m = mpi::api();
  int flag = 0;
  mpi::Status st{};
  if (m.Iprobe(mpi::ANY_SOURCE, TAG_FAIL, s.ctrl, &flag, &st) != mpi::SUCCESS || !flag) return false;
  int n = 0;
  m.Get_count(&st, m.byte, &n);
  std::string text(n > 0 ? (size_t)n : 0, '\0');
  m.Recv(text.data(), n, m.byte, st.source, TAG_FAIL, s.ctrl, nullptr);
  const std::string e = rank_str(st.source) + " failed: " + text;
  std::fprintf(stderr, "[mae %s] %s; this rank stops too\n", rank_str(s.rank).c_str(), e.c_str());
  std::fflush(stderr);
  static const char ack = 1;
  mpi::Request req = nullptr;
  if (m.Isend(&ack, 1, m.byte, st.source, TAG_ACK, s.ctrl, &req) == mpi::SUCCESS) {
    const double until = now_ms() + 1000;
    int sent = 0;
    while (!sent && now_ms() < until && m.Test(&req, &sent, nullptr) == mpi::SUCCESS)
      if (!sent) nap();
  }
  set_error(s, e);
  return true;
}

// The NCCL buckets: releases those finished on the device, fails the run on an NCCL error or a timeout.
void watch_nccl() {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.nccl || !s.nccl_comm || s.failed.load() || s.fail_requested) return;
  for (auto it = s.nccl_jobs.begin(); it != s.nccl_jobs.end();) {
    NcclJob& j = *it->second;
    int done = 0;
    try {
      done = s.nccl->query(s.nccl_comm, j.work);
    } catch (const std::exception& e) {
      fail_locally_locked(s, j.what + ": " + e.what());
      return;
    }
    if (!done && now_ms() - j.start_ms > s.timeout_s * 1000) {
      fail_locally_locked(s, timeout_text(j.what + " (NCCL)", s.timeout_s));
      return;
    }
    if (done && j.finished) {
      try {
        s.nccl->release(s.nccl_comm, j.work);
      } catch (const std::exception&) {
      }
      it = s.nccl_jobs.erase(it);
    } else {
      ++it;
    }
  }
}

// Tells every other rank why this one fails, and waits (5 s at most) until each has acknowledged or failed too.
void announce_failure() {
  State& s = S();
  const mpi::Api& m = mpi::api();
  // fail_message is not changed once requested: it stays the send buffer of sends that may never complete
  const std::string& text = s.fail_message;
  std::vector<mpi::Request> reqs;
  for (int r = 0; r < s.size; r++) {
    if (r == s.rank) continue;
    mpi::Request q = nullptr;
    if (m.Isend(text.data(), (int)text.size(), m.byte, r, TAG_FAIL, s.ctrl, &q) == mpi::SUCCESS) reqs.push_back(q);
  }
  std::vector<bool> heard(s.size, false);
  int pending = s.size - 1;
  const double until = now_ms() + 5000;
  while (pending > 0 && now_ms() < until) {
    for (int tag : {TAG_ACK, TAG_FAIL}) {
      int flag = 0;
      mpi::Status st{};
      if (m.Iprobe(mpi::ANY_SOURCE, tag, s.ctrl, &flag, &st) != mpi::SUCCESS || !flag) continue;
      int n = 0;
      m.Get_count(&st, m.byte, &n);
      std::vector<char> sink(n > 0 ? (size_t)n : 1);
      m.Recv(sink.data(), n, m.byte, st.source, tag, s.ctrl, nullptr);
      if (st.source >= 0 && st.source < s.size && !heard[st.source]) {
        heard[st.source] = true;
        pending--;
      }
    }
    for (mpi::Request& q : reqs) {
      int f = 0;
      if (q) m.Test(&q, &f, nullptr);
    }
    nap();
  }
  std::lock_guard<std::mutex> lock(s.mu);
  s.fail_announced = true;
  set_error_locked(s, rank_str(s.rank) + " failed: " + s.fail_message);
  s.done.notify_all();
}

// Between polls: a peer's failure, commFail, NCCL. Returns false when the run has failed.
bool housekeeping() {
  State& s = S();
  if (s.failed.load()) return false;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.fail_requested) return false;
  }
  if (receive_failure()) return false;
  watch_nccl();
  return !s.failed.load();
}

// Polls a request until it completes; false (the error recorded) on a failure meanwhile or after the timeout.
bool complete(mpi::Request* req, const Job& job) {
  State& s = S();
  const mpi::Api& m = mpi::api();
  const double until = job.start_ms + s.timeout_s * 1000;
  for (int polls = 0;; polls++) {
    int flag = 0;
    const int rc = m.Test(req, &flag, nullptr);
    if (rc != mpi::SUCCESS) {
      fail_locally(s, "MPI_Test failed for " + job.what + ": " + mpi::error_string(rc));
      return false;
    }
    if (flag) return true;
    if ((polls & 15) == 0 && !housekeeping()) return false;
    if (now_ms() > until) {
      fail_locally(s, timeout_text(job.what, s.timeout_s));
      return false;
    }
    nap();
  }
}

bool run_grads(Job& j) {
  State& s = S();
  const mpi::Api& m = mpi::api();
  if (s.size == 1) return true;  // the mean over one rank is the gradient itself
  size_t total = 0;
  for (const auto& g : j.grads) total += g->bytes / 4;
  if (total > (size_t)INT_MAX) throw Error(j.what + " holds more than 2^31 values");
  if (s.buffer.size() < total) s.buffer.resize(total);
  float* buf = s.buffer.data();
  size_t off = 0;
  for (const auto& g : j.grads) {
    std::memcpy(buf + off, g->data, g->bytes);
    off += g->bytes / 4;
  }
  mpi::Request req = nullptr;
  check_mpi(m.Iallreduce(mpi::IN_PLACE, buf, (int)total, m.float_, m.sum, m.comm_world, &req), "MPI_Iallreduce", j.what);
  if (!complete(&req, j)) return false;
  const float scale = 1.0f / (float)s.size;
  off = 0;
  for (const auto& g : j.grads) {
    float* d = static_cast<float*>(g->data);
    const size_t n = g->bytes / 4;
    for (size_t i = 0; i < n; i++) d[i] = buf[off + i] * scale;
    off += n;
  }
  return true;
}

bool run_job(Job& j) {
  State& s = S();
  const mpi::Api& m = mpi::api();
  mpi::Request req = nullptr;
  switch (j.kind) {
    case Job::GRADS:
      return run_grads(j);
    case Job::ALLREDUCE:
      check_mpi(m.Iallreduce(mpi::IN_PLACE, j.values.data(), (int)j.values.size(), m.double_, j.max ? m.max : m.sum,
                             m.comm_world, &req),
                "MPI_Iallreduce", j.what);
      return complete(&req, j);
    case Job::BCAST: {
      int64_t n = (int64_t)j.bytes.size();
      check_mpi(m.Ibcast(&n, 8, m.byte, j.root, m.comm_world, &req), "MPI_Ibcast", j.what);
      if (!complete(&req, j)) return false;
      if (n > INT_MAX) throw Error(j.what + " is over 2 GiB; send it in parts");
      j.bytes.resize((size_t)n);
      if (n == 0) return true;
      check_mpi(m.Ibcast(j.bytes.data(), (int)n, m.byte, j.root, m.comm_world, &req), "MPI_Ibcast", j.what);
      return complete(&req, j);
    }
    case Job::ALLGATHER: {
      std::vector<int> counts(s.size), displs(s.size);
      int mine = (int)j.bytes.size();
      check_mpi(m.Iallgather(&mine, 1, m.int_, counts.data(), 1, m.int_, m.comm_world, &req), "MPI_Iallgather", j.what);
      if (!complete(&req, j)) return false;
      int64_t total = 0;
      for (int r = 0; r < s.size; r++) {
        displs[r] = (int)total;
        total += counts[r];
      }
      if (total > INT_MAX) throw Error(j.what + " gathers over 2 GiB; gather it in parts");
      std::vector<uint8_t> all((size_t)total + 1);
      check_mpi(m.Iallgatherv(j.bytes.data(), mine, m.byte, all.data(), counts.data(), displs.data(), m.byte,
                              m.comm_world, &req),
                "MPI_Iallgatherv", j.what);
      if (!complete(&req, j)) return false;
      for (int r = 0; r < s.size; r++) j.gathered.emplace_back(all.begin() + displs[r], all.begin() + displs[r] + counts[r]);
      return true;
    }
    case Job::BARRIER:
    case Job::FINALIZE:
      check_mpi(m.Ibarrier(m.comm_world, &req), "MPI_Ibarrier", j.what);
      if (!complete(&req, j)) return false;
      if (j.kind == Job::FINALIZE) {
        check_mpi(m.Finalize(), "MPI_Finalize", j.what);
        std::lock_guard<std::mutex> lock(s.mu);
        s.finalized = true;
      }
      return true;
  }
  return false;
}

void thread_main(std::string* init_error) {
  State& s = S();
  const mpi::Api& m = mpi::api();
  try {
    int provided = 0;
    check_mpi(m.Init_thread(nullptr, nullptr, mpi::THREAD_FUNNELED, &provided), "MPI_Init_thread", "the start of MPI");
    m.Comm_set_errhandler(m.comm_world, m.errors_return);
    int rank = 0, size = 1, lr = 0, ls = 1;
    m.Comm_rank(m.comm_world, &rank);
    m.Comm_size(m.comm_world, &size);
    mpi::Comm local = nullptr, ctrl = nullptr;
    check_mpi(m.Comm_split_type(m.comm_world, mpi::COMM_TYPE_SHARED, rank, m.info_null, &local), "MPI_Comm_split_type",
              "the local rank");
    m.Comm_rank(local, &lr);
    m.Comm_size(local, &ls);
    check_mpi(m.Comm_dup(m.comm_world, &ctrl), "MPI_Comm_dup", "the control channel");
    std::lock_guard<std::mutex> lock(s.mu);
    s.rank = rank;
    s.size = size;
    s.local_rank = lr;
    s.local_size = ls;
    s.provided = provided;
    s.ctrl = ctrl;
    s.ready = true;
    s.done.notify_all();
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(s.mu);
    *init_error = e.what();
    s.done.notify_all();
    return;
  }
  for (;;) {
    std::shared_ptr<Job> job;
    bool announce = false;
    {
      std::unique_lock<std::mutex> lock(s.mu);
      s.wake.wait_for(lock, std::chrono::milliseconds(20),
                      [&] { return !s.queue.empty() || (s.fail_requested && !s.fail_announced); });
      if (s.fail_requested && !s.fail_announced) {
        announce = true;
      } else if (!s.queue.empty()) {
        job = s.queue.front();
        s.queue.pop_front();
      }
    }
    if (announce) {
      announce_failure();
      continue;
    }
    if (!job) {
      if (!s.failed.load()) housekeeping();
      continue;
    }
    bool ok = false;
    if (!s.failed.load()) {
      job->start_ms = now_ms();
      try {
        ok = run_job(*job);
      } catch (const std::exception& e) {
        fail_locally(s, e.what());
      }
      job->end_ms = now_ms();
    }
    std::lock_guard<std::mutex> lock(s.mu);
    job->done = true;
    job->ok = ok;
    s.done.notify_all();
    if (ok && job->kind == Job::FINALIZE) return;
  }
}

// ---- JavaScript entry points --------------------------------------------------------------------------------------

[[noreturn]] void throw_failed(const State& s) { throw Error(s.error); }

void require_ready(const Args& a) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.ready) a.fail("the communicator has not been started (commInit)");
  if (s.failed.load()) throw_failed(s);
  if (s.finalized) a.fail("MPI has been finalized");
}

std::string what_arg(const Args& a, size_t i, const char* fallback) {
  if (i < a.info.Length() && a.info[i].IsString()) return a.info[i].As<Napi::String>().Utf8Value();
  return fallback;
}

int64_t enqueue(std::shared_ptr<Job> job) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  const int64_t t = s.next_ticket++;
  s.jobs[t] = job;
  s.queue.push_back(std::move(job));
  s.wake.notify_one();
  return t;
}

// waits for job `t`; throws the run's error if it failed
std::shared_ptr<Job> wait_ticket(int64_t t) {
  State& s = S();
  std::unique_lock<std::mutex> lock(s.mu);
  auto it = s.jobs.find(t);
  if (it == s.jobs.end()) throw Error("no pending communication " + std::to_string(t) + " (already waited for?)");
  std::shared_ptr<Job> job = it->second;
  // a job abandoned for commFail is done but not ok; the failure is recorded right after it
  s.done.wait(lock, [&] { return (job->done && job->ok) || s.failed.load(); });
  s.jobs.erase(t);
  if (s.failed.load()) throw_failed(s);
  return job;
}

std::shared_ptr<Job> run_sync(std::shared_ptr<Job> job) { return wait_ticket(enqueue(std::move(job))); }

Napi::Object world_object(Napi::Env env, const State& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("rank", s.rank);
  o.Set("size", s.size);
  o.Set("localRank", s.local_rank);
  o.Set("localSize", s.local_size);
  o.Set("library", mpi::path());
  o.Set("version", mpi::version());
  return o;
}

// mpiInfo(path?) -> { found, library?, version?, reason? }: opens the library if it can (MPI is not started)
Napi::Value mpi_info(const Args& a) {
  std::string reason;
  const bool ok = mpi::load(what_arg(a, 0, ""), &reason);
  Napi::Object o = Napi::Object::New(a.env());
  o.Set("found", ok);
  if (ok) {
    o.Set("library", mpi::path());
    o.Set("version", mpi::version());
  } else {
    o.Set("reason", reason);
  }
  return o;
}

// commInit(path | null, timeoutSeconds) -> { rank, size, localRank, localSize, library, version }; once per process
Napi::Value comm_init(const Args& a) {
  State& s = S();
  const double timeout = a.number(1, "timeoutSeconds");
  // the waits add it to the steady clock's nanoseconds (int64): Infinity or 1e300 would overflow there and end the
  // wait at once
  a.expect(timeout > 0 && timeout <= kMaxTimeoutSeconds,
           "timeoutSeconds must be positive and at most 1e9 (about 31 years), got " + a.js(timeout));
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.failed.load()) throw_failed(s);
    if (s.finalized) a.fail("MPI has been finalized; it cannot be started twice in one process");
    if (s.ready) {
      s.timeout_s = timeout;
      return world_object(a.env(), s);
    }
  }
  std::string reason;
  const std::string path = what_arg(a, 0, "");
  if (!mpi::load(path, &reason)) a.fail(reason);
  if (!path.empty() && path != mpi::requested())
    a.fail("MPI was already opened from " + mpi::path() + " in this process; the MPI library " + path + " cannot replace it");
  static std::string init_error;
  {
    std::unique_lock<std::mutex> lock(s.mu);
    s.timeout_s = timeout;
    if (!s.started) {
      s.started = true;
      s.thread = std::thread(thread_main, &init_error);
      s.thread.detach();
    }
    const bool in_time = s.done.wait_for(lock, std::chrono::duration<double>(timeout),
                                         [&] { return s.ready || !init_error.empty(); });
    if (!init_error.empty()) a.fail(init_error);
    if (!in_time)
      a.fail("MPI_Init_thread did not finish within " + std::to_string((int)timeout) +
             " s: the launcher (mpirun, srun --mpi=pmix) may not match this MPI library (" + mpi::path() + ")");
    if (s.provided < mpi::THREAD_FUNNELED)
      a.fail("the MPI library gives thread level " + std::to_string(s.provided) +
             "; MPI_THREAD_FUNNELED (1) or higher is needed");
    return world_object(a.env(), s);
  }
}

// commAllreduceGrads(grads, bf16, what) -> ticket: the average over ranks of a bucket of float32 gradients
Napi::Value comm_allreduce_grads(const Args& a) {
  State& s = S();
  std::vector<JsTensor*> ts = a.tensor_list(0, "grads", DType::F32);
  a.expect(!ts.empty(), "grads must not be empty");
  const bool bf16 = a.boolean(1, "bf16");
  const std::string what = what_arg(a, 2, "a gradient all-reduce");
  const Device dev = ts[0]->device();
  for (const JsTensor* t : ts) a.expect(t->device() == dev, "grads are on different devices");
  if (dev.type == DeviceType::CPU) {
    require_ready(a);
    a.expect(!bf16, "bfloat16 gradient all-reduce is for CUDA tensors only");
    auto job = std::make_shared<Job>();
    job->kind = Job::GRADS;
    job->what = what;
    for (const JsTensor* t : ts) job->grads.push_back(t->storage());
    return Napi::Number::New(a.env(), (double)enqueue(std::move(job)));
  }
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.failed.load()) throw_failed(s);
  if (!s.nccl_comm) a.fail("CUDA gradients need the NCCL communicator (commNcclInit) first");
  if (dev.index != s.nccl_device)
    a.fail("the NCCL communicator is on cuda:" + std::to_string(s.nccl_device) + ", the gradients on " + device_str(dev));
  std::vector<TensorView> views;
  auto job = std::make_shared<NcclJob>();
  for (const JsTensor* t : ts) {
    views.push_back(t->view());
    job->keep.push_back(t->storage());
  }
  job->what = what;
  job->start_ms = now_ms();
  job->work = s.nccl->allreduce_start(s.nccl_comm, views.data(), (int)views.size(), bf16 ? 1 : 0);
  const int64_t t = s.next_ticket++;
  s.nccl_jobs[t] = job;
  return Napi::Number::New(a.env(), (double)t);
}

// commWait(ticket) -> [startMs, endMs]
Napi::Value comm_wait(const Args& a) {
  State& s = S();
  const int64_t t = a.integer(0, "ticket", 1);
  double start = 0, end = 0;
  {
    std::unique_lock<std::mutex> lock(s.mu);
    auto nj = s.nccl_jobs.find(t);
    if (nj != s.nccl_jobs.end()) {
      if (s.failed.load()) throw_failed(s);
      NcclJob& j = *nj->second;
      if (j.finished) a.fail("communication " + std::to_string(t) + " was already waited for");
      s.nccl->finish(s.nccl_comm, j.work);  // orders the device stream after the all-reduce; no host wait
      j.finished = true;
      start = end = j.start_ms;
      if (!s.ready) {
        // no communication thread to watch it (a single-rank communicator without MPI): released now, which the
        // device stream's order makes safe (the unpack, the buffer's last use, is queued there)
        s.nccl->release(s.nccl_comm, j.work);
        s.nccl_jobs.erase(nj);
      }
      Napi::Array r = Napi::Array::New(a.env(), 2);
      r.Set(0u, start);
      r.Set(1u, end);
      return r;
    }
  }
  std::shared_ptr<Job> job = wait_ticket(t);
  Napi::Array r = Napi::Array::New(a.env(), 2);
  r.Set(0u, job->start_ms);
  r.Set(1u, job->end_ms);
  return r;
}

// commAllreduce(Float64Array, 'sum' | 'max', what): in place, blocking
Napi::Value comm_allreduce(const Args& a) {
  require_ready(a);
  if (a.info.Length() < 1 || !a.info[0].IsTypedArray() || a.info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    a.fail("values must be a Float64Array");
  Napi::Float64Array v = a.info[0].As<Napi::Float64Array>();
  const std::string op = what_arg(a, 1, "");
  a.expect(op == "sum" || op == "max", "op must be 'sum' or 'max'");
  auto job = std::make_shared<Job>();
  job->kind = Job::ALLREDUCE;
  job->max = op == "max";
  job->what = what_arg(a, 2, "an all-reduce");
  job->values.assign(v.Data(), v.Data() + v.ElementLength());
  job = run_sync(std::move(job));
  std::memcpy(v.Data(), job->values.data(), job->values.size() * 8);
  return a.env().Undefined();
}

std::vector<uint8_t> bytes_arg(const Args& a, size_t i, const char* name) {
  if (i >= a.info.Length() || !a.info[i].IsTypedArray() || a.info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    a.fail(std::string(name) + " must be a Uint8Array");
  Napi::Uint8Array b = a.info[i].As<Napi::Uint8Array>();
  return std::vector<uint8_t>(b.Data(), b.Data() + b.ElementLength());
}

Napi::Value to_js(Napi::Env env, const std::vector<uint8_t>& b) {
  Napi::Uint8Array out = Napi::Uint8Array::New(env, b.size());
  if (!b.empty()) std::memcpy(out.Data(), b.data(), b.size());
  return out;
}

// commBroadcast(bytes | null, root, what) -> the root's bytes on every rank
Napi::Value comm_broadcast(const Args& a) {
  require_ready(a);
  State& s = S();
  const int root = (int)a.integer(1, "root", 0, INT32_MAX);
  a.expect(root < s.size, "root " + std::to_string(root) + " is not a rank of " + std::to_string(s.size));
  auto job = std::make_shared<Job>();
  job->kind = Job::BCAST;
  job->root = root;
  job->what = what_arg(a, 2, "a broadcast");
  if (s.rank == root) job->bytes = bytes_arg(a, 0, "bytes");
  job = run_sync(std::move(job));
  return to_js(a.env(), job->bytes);
}

// commAllgather(bytes, what) -> every rank's bytes, in rank order
Napi::Value comm_allgather(const Args& a) {
  require_ready(a);
  auto job = std::make_shared<Job>();
  job->kind = Job::ALLGATHER;
  job->bytes = bytes_arg(a, 0, "bytes");
  job->what = what_arg(a, 1, "an all-gather");
  job = run_sync(std::move(job));
  Napi::Array out = Napi::Array::New(a.env(), job->gathered.size());
  for (size_t r = 0; r < job->gathered.size(); r++) out.Set((uint32_t)r, to_js(a.env(), job->gathered[r]));
  return out;
}

Napi::Value comm_barrier(const Args& a) {
  require_ready(a);
  auto job = std::make_shared<Job>();
  job->kind = Job::BARRIER;
  job->what = what_arg(a, 0, "a barrier");
  run_sync(std::move(job));
  return a.env().Undefined();
}

// commFail(message): tells the other ranks why this one stops (a no-op once the run has failed)
Napi::Value comm_fail(const Args& a) {
  State& s = S();
  const std::string message = what_arg(a, 0, "an error");
  std::unique_lock<std::mutex> lock(s.mu);
  if (!s.ready || s.finalized) return a.env().Undefined();
  fail_locally_locked(s, message);
  s.done.wait_for(lock, std::chrono::seconds(10), [&] { return s.fail_announced || s.failed.load(); });
  return a.env().Undefined();
}

// commAbort(code): MPI_Abort of the whole job (every rank ends); does not return
Napi::Value comm_abort(const Args& a) {
  State& s = S();
  const int code = (int)a.integer(0, "code", 0, 255);
  std::fflush(stdout);
  std::fflush(stderr);
  bool ready;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    ready = s.ready && !s.finalized;
  }
  // MPI_Abort is for emergencies and may be called from any thread
  if (ready) mpi::api().Abort(mpi::api().comm_world, code);
  std::_Exit(code);
}

// commFinalize(): a barrier, then MPI_Finalize (both on the comm thread, bounded by the timeout)
Napi::Value comm_finalize(const Args& a) {
  State& s = S();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.ready || s.finalized) return a.env().Undefined();
    if (s.failed.load()) throw_failed(s);
  }
  auto job = std::make_shared<Job>();
  job->kind = Job::FINALIZE;
  job->what = "the barrier at the end of the run (MPI_Finalize)";
  run_sync(std::move(job));
  return a.env().Undefined();
}

Napi::Value comm_now(const Args& a) { return Napi::Number::New(a.env(), now_ms()); }

// The NCCL API of the loaded CUDA library, or the reason there is none.
const MaeNcclApi* nccl_api(const std::string& path, std::string* reason) {
  const CudaState& cs = cuda_state();
  if (!cs.library_found || !cs.handle) {
    *reason = "no CUDA library to find NCCL through: " + cs.reason;
    return nullptr;
  }
  auto entry = reinterpret_cast<mae_cuda_nccl_fn>(dlsym(cs.handle, "mae_cuda_nccl"));
  if (!entry) {
    *reason = cs.library + " has no mae_cuda_nccl entry point (a library built before NCCL support: rebuild it)";
    return nullptr;
  }
  char err[2048] = {0};
  const MaeNcclApi* api = nullptr;
  if (entry(MAE_NCCL_ABI_VERSION, path.empty() ? nullptr : path.c_str(), &api, err, sizeof err) != 0 || !api) {
    *reason = err[0] ? err : "NCCL could not be loaded";
    return nullptr;
  }
  return api;
}

// ncclInfo(path?) -> { found, library?, version?, reason? }
Napi::Value nccl_info(const Args& a) {
  std::string reason;
  const MaeNcclApi* api = nccl_api(what_arg(a, 0, ""), &reason);
  Napi::Object o = Napi::Object::New(a.env());
  o.Set("found", api != nullptr);
  if (api) {
    o.Set("library", std::string(api->path));
    o.Set("version", api->version);
  } else {
    o.Set("reason", reason);
  }
  return o;
}

// commNcclInit(device, path?) -> { library, version }: a NCCL communicator over the MPI world on cuda:device (rank 0
// makes the unique id and broadcasts it over MPI). Without MPI started: a communicator of this process alone (the
// single-rank path of the GPU check, tools/nccl-check.ts).
Napi::Value comm_nccl_init(const Args& a) {
  State& s = S();
  bool mpi_ready;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.failed.load()) throw_failed(s);
    mpi_ready = s.ready && !s.finalized;
  }
  const int device = (int)a.integer(0, "device", 0, INT32_MAX);
  std::string reason;
  const MaeNcclApi* api = nccl_api(what_arg(a, 1, ""), &reason);
  if (!api) a.fail(reason);
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.nccl_comm) {
      if (s.nccl_device != device)
        a.fail("NCCL was started on cuda:" + std::to_string(s.nccl_device) + "; one device per process");
      Napi::Object o = Napi::Object::New(a.env());
      o.Set("library", std::string(api->path));
      o.Set("version", api->version);
      return o;
    }
  }
  ops_for_device(Device{DeviceType::CUDA, device});  // CUDA usable on that device, or the reason
  auto job = std::make_shared<Job>();
  job->kind = Job::BCAST;
  job->what = "the broadcast of the NCCL unique id";
  if (s.rank == 0) {
    job->bytes.resize(128);
    api->unique_id(reinterpret_cast<char*>(job->bytes.data()));
  }
  if (mpi_ready) {
    job = run_sync(std::move(job));
    if (job->bytes.size() != 128) a.fail("the NCCL unique id from rank 0 has " + std::to_string(job->bytes.size()) + " bytes");
    // every rank is here (a bounded barrier) before the unbounded ncclCommInitRank
    auto barrier = std::make_shared<Job>();
    barrier->kind = Job::BARRIER;
    barrier->what = "the barrier before ncclCommInitRank";
    run_sync(std::move(barrier));
  }
  MaeNcclComm* comm = api->comm_init(device, mpi_ready ? s.size : 1, mpi_ready ? s.rank : 0, reinterpret_cast<const char*>(job->bytes.data()));
  std::lock_guard<std::mutex> lock(s.mu);
  s.nccl = api;
  s.nccl_comm = comm;
  s.nccl_device = device;
  Napi::Object o = Napi::Object::New(a.env());
  o.Set("library", std::string(api->path));
  o.Set("version", api->version);
  return o;
}

// commState() -> { started, failed, error? }
Napi::Value comm_state(const Args& a) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  Napi::Object o = Napi::Object::New(a.env());
  o.Set("ready", s.ready);
  o.Set("finalized", s.finalized);
  o.Set("failed", s.failed.load());
  if (s.failed.load()) o.Set("error", s.error);
  return o;
}

const Entry entries[] = {
    {"mpiInfo", mpi_info},
    {"ncclInfo", nccl_info},
    {"commInit", comm_init},
    {"commNcclInit", comm_nccl_init},
    {"commAllreduceGrads", comm_allreduce_grads},
    {"commWait", comm_wait},
    {"commAllreduce", comm_allreduce},
    {"commBroadcast", comm_broadcast},
    {"commAllgather", comm_allgather},
    {"commBarrier", comm_barrier},
    {"commFail", comm_fail},
    {"commAbort", comm_abort},
    {"commFinalize", comm_finalize},
    {"commNow", comm_now},
    {"commState", comm_state},
};

}  // namespace

void register_comm(Napi::Env env, Napi::Object exports) {
  register_entries(env, exports, entries, sizeof(entries) / sizeof(entries[0]));
}

}  // namespace mae
