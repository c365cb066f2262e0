#include "transform.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace basam
{

Size workingSize(Size original, int minSize, int maxSize, int resolution)
{
    int const longest = std::max(original.height, original.width);
    int longSide = std::min(std::max(longest, minSize), maxSize);
    if (resolution > 0)
    {
        if (resolution < minSize || resolution > maxSize)
        {
            throw std::invalid_argument("long side " + std::to_string(resolution) + " is outside the engines' size range "
                + std::to_string(minSize) + "-" + std::to_string(maxSize) + ": choose one inside it");
        }
        longSide = resolution;
    }
    double const scale = static_cast<double>(longSide) / longest;
    // segment-anything's ResizeLongestSide.get_preprocess_shape: int(side * scale + 0.5), halves up.
    auto side = [scale](int value) { return std::max(1, static_cast<int>(value * scale + 0.5)); };
    return {side(original.height), side(original.width)};
}

ImageTransform ImageTransform::plan(Size original, int minSize, int maxSize, int multipleOf, int resolution)
{
    if (original.height <= 0 || original.width <= 0)
    {
        throw std::invalid_argument("the image is empty");
    }
    Size const resized = workingSize(original, minSize, maxSize, resolution);
    // A fixed long side pads to its square, as SamPredictor pads to img_size x img_size.
    Size const sides = resolution > 0 ? Size{resolution, resolution} : resized;
    // Round up to the patch; a short side below the minimum is padded up to it.
    auto pad = [&](int side) { return std::max((side + multipleOf - 1) / multipleOf * multipleOf, minSize); };
    return {original, resized, {pad(sides.height), pad(sides.width)}};
}

double ImageTransform::scaleX() const
{
    return static_cast<double>(resized.width) / original.width;
}

double ImageTransform::scaleY() const
{
    return static_cast<double>(resized.height) / original.height;
}

Size ImageTransform::lowResSize() const
{
    return {padded.height / 4, padded.width / 4};
}

void ImageTransform::toModelCoords(double x, double y, double& modelX, double& modelY) const
{
    modelX = x * scaleX();
    modelY = y * scaleY();
}

void ImageTransform::toImageCoords(double modelX, double modelY, double& x, double& y) const
{
    x = modelX / scaleX();
    y = modelY / scaleY();
}

std::vector<float> ImageTransform::modelInput(uint8_t const* rgb) const
{
    std::vector<uint8_t> const image = resizeBilinearPil(rgb, original, resized); // h w 3
    std::vector<float> out(3 * static_cast<size_t>(padded.height) * padded.width, 0.0F);
    for (int c = 0; c < 3; ++c)
    {
        for (int y = 0; y < resized.height; ++y)
        {
            for (int x = 0; x < resized.width; ++x)
            {
                float const value = image[(static_cast<size_t>(y) * resized.width + x) * 3 + c];
                out[(static_cast<size_t>(c) * padded.height + y) * padded.width + x]
                    = (value - kPixelMean[c]) / kPixelStd[c];
            }
        }
    }
    return out;
}

std::vector<float> ImageTransform::masksToImage(float const* lowRes) const
{
    std::vector<float> const full = resizeBilinear(lowRes, 1, lowResSize(), padded);
    std::vector<float> cropped(static_cast<size_t>(resized.height) * resized.width);
    for (int y = 0; y < resized.height; ++y)
    {
        std::copy_n(&full[static_cast<size_t>(y) * padded.width], resized.width,
            &cropped[static_cast<size_t>(y) * resized.width]);
    }
    return resizeBilinear(cropped.data(), 1, resized, original);
}

namespace
{

// One output position of a separable resize: the first input index and the weights from there.
struct Taps
{
    int first = 0;
    std::vector<double> weights;
};

// PyTorch's _compute_indices_weights_aa (aten/src/ATen/native/UpSample.h) for the triangle filter:
// support 1 when enlarging, 1 x (in / out) when shrinking, weights normalized to sum 1.
std::vector<Taps> antialiasTaps(int in, int out)
{
    double const scale = static_cast<double>(in) / out;
    double const support = scale >= 1.0 ? scale : 1.0;
    double const invScale = scale >= 1.0 ? 1.0 / scale : 1.0;
    std::vector<Taps> taps(out);
    for (int i = 0; i < out; ++i)
    {
        double const center = scale * (i + 0.5);
        int const first = std::max(static_cast<int>(center - support + 0.5), 0);
        int const last = std::min(static_cast<int>(center + support + 0.5), in);
        double total = 0.0;
        taps[i].first = first;
        for (int j = first; j < last; ++j)
        {
            double const w = std::max(0.0, 1.0 - std::abs((j - center + 0.5) * invScale));
            taps[i].weights.push_back(w);
            total += w;
        }
        if (total != 0.0)
        {
            for (double& w : taps[i].weights)
            {
                w /= total;
            }
        }
    }
    return taps;
}

// PyTorch's linear source index for align_corners=False (area_pixel_compute_source_index, clamped
// at 0) and its guard at the last pixel: two taps.
std::vector<Taps> linearTaps(int in, int out)
{
    double const scale = static_cast<double>(in) / out;
    std::vector<Taps> taps(out);
    for (int i = 0; i < out; ++i)
    {
        double const source = std::max(scale * (i + 0.5) - 0.5, 0.0);
        int const index = std::min(static_cast<int>(source), in - 1);
        double const lambda = std::min(std::max(source - index, 0.0), 1.0);
        taps[i].first = index;
        // At the last pixel both taps are that pixel: weight 1 in all.
        taps[i].weights = index < in - 1 ? std::vector<double>{1.0 - lambda, lambda} : std::vector<double>{1.0};
    }
    return taps;
}

// PIL's fixed-point form of normalized weights (Resample.c, normalize_coeffs_8bpc): 22 bits.
constexpr int kPrecisionBits = 32 - 8 - 2;

std::vector<std::vector<int32_t>> fixedPoint(std::vector<Taps> const& taps)
{
    std::vector<std::vector<int32_t>> out(taps.size());
    for (size_t i = 0; i < taps.size(); ++i)
    {
        for (double w : taps[i].weights)
        {
            // Bilinear weights are >= 0: PIL rounds them half up.
            out[i].push_back(static_cast<int32_t>(w * (1 << kPrecisionBits) + 0.5));
        }
    }
    return out;
}

// One PIL pass on interleaved uint8 (3 channels): start at half a unit, sum, shift, clip to 0-255.
uint8_t pilTap(uint8_t const* first, size_t stride, std::vector<int32_t> const& weights)
{
    int32_t sum = 1 << (kPrecisionBits - 1);
    for (size_t k = 0; k < weights.size(); ++k)
    {
        sum += static_cast<int32_t>(first[k * stride]) * weights[k];
    }
    return static_cast<uint8_t>(std::min(std::max(sum >> kPrecisionBits, 0), 255));
}

// Along the width first, then along the height, each pass with its own taps.
std::vector<float> separable(
    float const* src, int channels, Size in, Size out, std::vector<Taps> const& rows, std::vector<Taps> const& cols)
{
    std::vector<float> horizontal(static_cast<size_t>(channels) * in.height * out.width);
    for (int c = 0; c < channels; ++c)
    {
        for (int y = 0; y < in.height; ++y)
        {
            float const* line = src + (static_cast<size_t>(c) * in.height + y) * in.width;
            for (int x = 0; x < out.width; ++x)
            {
                double sum = 0.0;
                for (size_t k = 0; k < cols[x].weights.size(); ++k)
                {
                    sum += cols[x].weights[k] * line[cols[x].first + k];
                }
                horizontal[(static_cast<size_t>(c) * in.height + y) * out.width + x] = static_cast<float>(sum);
            }
        }
    }
    std::vector<float> result(static_cast<size_t>(channels) * out.height * out.width);
    for (int c = 0; c < channels; ++c)
    {
        for (int y = 0; y < out.height; ++y)
        {
            for (int x = 0; x < out.width; ++x)
            {
                double sum = 0.0;
                for (size_t k = 0; k < rows[y].weights.size(); ++k)
                {
                    sum += rows[y].weights[k]
                        * horizontal[(static_cast<size_t>(c) * in.height + rows[y].first + k) * out.width + x];
                }
                result[(static_cast<size_t>(c) * out.height + y) * out.width + x] = static_cast<float>(sum);
            }
        }
    }
    return result;
}

} // namespace

std::vector<uint8_t> resizeBilinearPil(uint8_t const* rgb, Size in, Size out)
{
    // Written by hand: the sample has no image library. PIL's ImagingResample (Resample.c): the
    // triangle filter's taps (as antialiasTaps), each pass rounded to uint8, the width pass first;
    // a pass whose size does not change is skipped.
    std::vector<uint8_t> image(rgb, rgb + static_cast<size_t>(in.height) * in.width * 3);
    Size current = in;
    if (out.width != in.width)
    {
        std::vector<Taps> const taps = antialiasTaps(in.width, out.width);
        std::vector<std::vector<int32_t>> const weights = fixedPoint(taps);
        std::vector<uint8_t> next(static_cast<size_t>(current.height) * out.width * 3);
        for (int y = 0; y < current.height; ++y)
        {
            for (int x = 0; x < out.width; ++x)
            {
                for (int c = 0; c < 3; ++c)
                {
                    uint8_t const* first = &image[(static_cast<size_t>(y) * current.width + taps[x].first) * 3 + c];
                    next[(static_cast<size_t>(y) * out.width + x) * 3 + c] = pilTap(first, 3, weights[x]);
                }
            }
        }
        image.swap(next);
        current.width = out.width;
    }
    if (out.height != in.height)
    {
        std::vector<Taps> const taps = antialiasTaps(in.height, out.height);
        std::vector<std::vector<int32_t>> const weights = fixedPoint(taps);
        std::vector<uint8_t> next(static_cast<size_t>(out.height) * current.width * 3);
        size_t const stride = static_cast<size_t>(current.width) * 3;
        for (int y = 0; y < out.height; ++y)
        {
            for (int x = 0; x < current.width; ++x)
            {
                for (int c = 0; c < 3; ++c)
                {
                    uint8_t const* first = &image[static_cast<size_t>(taps[y].first) * stride + x * 3 + c];
                    next[(static_cast<size_t>(y) * current.width + x) * 3 + c] = pilTap(first, stride, weights[y]);
                }
            }
        }
        image.swap(next);
    }
    return image;
}

std::vector<float> resizeBilinear(float const* src, int channels, Size in, Size out)
{
    return separable(src, channels, in, out, linearTaps(in.height, out.height), linearTaps(in.width, out.width));
}

std::vector<uint8_t> threshold(std::vector<float> const& logits, float level)
{
    std::vector<uint8_t> mask(logits.size());
    std::transform(logits.begin(), logits.end(), mask.begin(), [level](float v) { return v > level ? 255 : 0; });
    return mask;
}

} // namespace basam
