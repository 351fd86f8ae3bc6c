// C++ test of the compgen op library built by CMakeLists.txt: loads the library given as argv[1] (its static
// initialisers register the ops), then calls the ops through the c10 dispatcher and checks their results.
// Ops that are not registered are reported and skipped; a registered op with an unexpected schema is skipped too.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <string>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
  if (!ok) ++failures;
}

std::optional<c10::OperatorHandle> find_op(const char* name, const char* expected_schema) {
  auto op = c10::Dispatcher::singleton().findSchema({name, ""});
  if (!op) {
    std::printf("SKIP %s: not registered\n", name);
    return std::nullopt;
  }
  std::string schema = c10::toString(op->schema());
  if (schema != expected_schema) {
    std::printf("SKIP %s: schema is %s (test written for %s)\n", name, schema.c_str(), expected_schema);
    return std::nullopt;
  }
  return op;
}

using SsimFwd = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, int64_t, double, double,
                                                   double, int64_t, bool, bool, bool);
using SsimBwd = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                   const at::Tensor&, int64_t, double, int64_t, bool, bool, bool);

// Reference SSIM (valid windows) with ATen convolutions, float64.
at::Tensor ref_ssim(const at::Tensor& x, const at::Tensor& y, int64_t k, double sigma, double c1, double c2) {
  auto c = at::arange(k, x.options()) - double(k / 2);
  auto g = at::exp(-(c * c) / (2 * sigma * sigma));
  g = g / g.sum();
  const int64_t C = x.size(1);
  auto w = at::outer(g, g).view({1, 1, k, k}).expand({C, 1, k, k}).contiguous();
  auto blur = [&](const at::Tensor& t) { return at::conv2d(t, w, std::nullopt, at::IntArrayRef{1}, at::IntArrayRef{0}, at::IntArrayRef{1}, C); };
  auto mx = blur(x), my = blur(y);
  auto sxx = blur(x * x) - mx * mx, syy = blur(y * y) - my * my, sxy = blur(x * y) - mx * my;
  auto s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2));
  return s.mean();
}

void test_ssim() {
  auto fwd_h = find_op("compgen::ssim_fwd",
                       "compgen::ssim_fwd(Tensor x, Tensor y, int window_size, float sigma, float c1, float c2, int "
                       "reduction, bool loss, bool grad_x, bool grad_y) -> (Tensor, Tensor)");
  auto bwd_h = find_op("compgen::ssim_bwd",
                       "compgen::ssim_bwd(Tensor grad, Tensor x, Tensor y, Tensor dmaps, int window_size, float "
                       "sigma, int reduction, bool loss, bool grad_x, bool grad_y) -> (Tensor, Tensor)");
  check(fwd_h.has_value() && bwd_h.has_value(), "compgen::ssim_fwd and compgen::ssim_bwd are registered");
  if (!fwd_h || !bwd_h) return;
  auto fwd = fwd_h->typed<SsimFwd>();
  auto bwd = bwd_h->typed<SsimBwd>();
  const double c1 = 1e-4, c2 = 9e-4;
  at::manual_seed(0);
  auto x = at::rand({2, 3, 19, 23}, at::kDouble);
  auto y = at::clamp(x + 0.2 * at::randn_like(x), 0, 1);

  auto self = std::get<0>(fwd.call(x, x, 11, 1.5, c1, c2, 0, false, false, false)).item<double>();
  check(std::abs(self - 1.0) < 1e-12, "SSIM(x, x) = 1");
  auto sxy = std::get<0>(fwd.call(x, y, 11, 1.5, c1, c2, 0, false, false, false)).item<double>();
  auto syx = std::get<0>(fwd.call(y, x, 11, 1.5, c1, c2, 0, false, false, false)).item<double>();
  check(std::abs(sxy - syx) < 1e-12, "SSIM(x, y) = SSIM(y, x)");
  check(std::abs(sxy - ref_ssim(x, y, 11, 1.5, c1, c2).item<double>()) < 1e-10, "SSIM matches ATen reference");
  auto loss = std::get<0>(fwd.call(x, y, 11, 1.5, c1, c2, 0, true, false, false)).item<double>();
  check(std::abs(loss - 0.5 * (1 - sxy)) < 1e-12, "ssim loss = 0.5 (1 - SSIM)");
  auto none = std::get<0>(fwd.call(x, y, 7, 1.5, c1, c2, 1, false, false, false));
  auto map = std::get<0>(fwd.call(x, y, 7, 1.5, c1, c2, 2, false, false, false));
  check(none.sizes() == at::IntArrayRef({2}) && map.sizes() == at::IntArrayRef({2, 3, 13, 17}),
        "reduction none / map shapes");
  check(at::allclose(none, map.flatten(1).mean(1), 1e-12, 1e-12), "reduction none = per-image mean of the map");
  auto x32 = x.to(at::kFloat), y32 = y.to(at::kFloat);
  auto s32 = std::get<0>(fwd.call(x32, y32, 11, 1.5, c1, c2, 0, false, false, false)).item<double>();
  check(std::abs(s32 - sxy) < 1e-5, "float32 agrees with float64");

  // Gradient vs central finite differences at a few pixels (float64).
  auto out = fwd.call(x, y, 11, 1.5, c1, c2, 0, false, true, true);
  auto grads = bwd.call(at::ones({}, x.options()), x, y, std::get<1>(out), 11, 1.5, 0, false, true, true);
  const int64_t idx[][4] = {{0, 0, 0, 0}, {1, 2, 9, 11}, {0, 1, 18, 22}, {1, 0, 5, 17}};
  double worst = 0;
  for (auto& p : idx) {
    for (int which = 0; which < 2; ++which) {
      const double h = 1e-6;
      auto xp = x.clone(), yp = y.clone(), xm = x.clone(), ym = y.clone();
      auto& tp = which ? yp : xp;
      auto& tm = which ? ym : xm;
      tp.index_put_({p[0], p[1], p[2], p[3]}, tp.index({p[0], p[1], p[2], p[3]}) + h);
      tm.index_put_({p[0], p[1], p[2], p[3]}, tm.index({p[0], p[1], p[2], p[3]}) - h);
      const double fp = std::get<0>(fwd.call(xp, yp, 11, 1.5, c1, c2, 0, false, false, false)).item<double>();
      const double fm = std::get<0>(fwd.call(xm, ym, 11, 1.5, c1, c2, 0, false, false, false)).item<double>();
      const double fd = (fp - fm) / (2 * h);
      const double an = (which ? std::get<1>(grads) : std::get<0>(grads))[p[0]][p[1]][p[2]][p[3]].item<double>();
      const double scale = (which ? std::get<1>(grads) : std::get<0>(grads)).abs().max().item<double>();
      worst = std::max(worst, std::abs(fd - an) / scale);
    }
  }
  char msg[128];
  std::snprintf(msg, sizeof msg, "ssim_bwd matches finite differences (worst err / max|grad| %.2e)", worst);
  check(worst < 1e-6, msg);
}

void test_canny() {
  auto h = find_op("compgen::canny",
                   "compgen::canny(Tensor img, float low, float high, float blur_sigma, bool l2_gradient) -> Tensor");
  if (!h) return;
  auto img = at::zeros({2, 1, 32, 32}, at::kFloat);
  img.narrow(2, 8, 16).narrow(3, 8, 16).fill_(1.0);  // a bright square: edges on its border only
  auto e = h->typed<at::Tensor(const at::Tensor&, double, double, double, bool)>().call(img, 0.2, 0.5, 0.0, true);
  check(e.sizes() == at::IntArrayRef({2, 1, 32, 32}), "canny output shape N x 1 x H x W");
  check(at::logical_or(e == 0, e == 1).all().item<bool>(), "canny output is binary");
  check(e.sum().item<double>() > 0 && e.narrow(2, 0, 4).sum().item<double>() == 0 &&
            e.narrow(2, 12, 8).narrow(3, 12, 8).sum().item<double>() == 0,
        "canny finds the square's border and nothing inside or far away");
}

void test_awgn() {
  auto h = find_op("compgen::awgn", "compgen::awgn(Tensor z, Tensor sigma, Tensor seed, bool normalize) -> Tensor");
  if (!h) return;
  auto op = h->typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, bool)>();
  at::manual_seed(0);
  auto z = (at::rand({2, 1, 64, 64}) > 0.8).to(at::kFloat);
  auto seed = at::tensor(std::vector<int64_t>{1, 2}, at::kLong);
  auto zero = at::zeros({2}, at::kDouble);
  check(at::equal(op.call(z, zero, seed, true), z), "awgn with sigma 0 (infinite PSNR) is the identity");
  auto sigma = at::full({2}, 0.5, at::kDouble);
  auto a = op.call(z, sigma, seed, false);
  auto b = op.call(z, sigma, seed, false);
  const double sd = (a - z).std().item<double>();
  check(at::equal(a, b) && std::abs(sd - 0.5) < 0.05, "awgn is deterministic for a seed, noise std " +
        std::to_string(sd) + " ~ 0.5");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s path/to/_C.abi3.so\n", argv[0]);
    return 2;
  }
  // Python symbols of the module init are only bound if called (lazy binding); the ops need none of them.
  if (!dlopen(argv[1], RTLD_LAZY | RTLD_GLOBAL)) {
    std::fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
    return 1;
  }
  try {
    test_ssim();
    test_canny();
    test_awgn();
  } catch (const std::exception& e) {
    std::printf("FAIL exception: %s\n", e.what());
    ++failures;
  }
  std::printf("%s (%d failure%s)\n", failures ? "FAILED" : "OK", failures, failures == 1 ? "" : "s");
  return failures ? 1 : 0;
}
