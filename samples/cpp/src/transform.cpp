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
    if (scale == 1.0)
    {
        return original;
    }
    // Python's round() rounds halves to even, as nearbyint does in the default rounding mode.
    auto side = [scale](int value) { return std::max(1, static_cast<int>(std::nearbyint(value * scale))); };
    return {side(original.height), side(original.width)};
}

ImageTransform ImageTransform::plan(Size original, int minSize, int maxSize, int multipleOf, int resolution)
{
    if (original.height <= 0 || original.width <= 0)
    {
        throw std::invalid_argument("the image is empty");
    }
    Size const resized = workingSize(original, minSize, maxSize, resolution);
    // Round up to the patch; a short side below the minimum is padded up to it.
    auto pad = [&](int side) { return std::max((side + multipleOf - 1) / multipleOf * multipleOf, minSize); };
    return {original, resized, {pad(resized.height), pad(resized.width)}};
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
    modelX = (x + 0.5) * scaleX() - 0.5;
    modelY = (y + 0.5) * scaleY() - 0.5;
}

void ImageTransform::toImageCoords(double modelX, double modelY, double& x, double& y) const
{
    x = (modelX + 0.5) / scaleX() - 0.5;
    y = (modelY + 0.5) / scaleY() - 0.5;
}

std::vector<float> ImageTransform::modelInput(uint8_t const* rgb) const
{
    size_t const pixels = static_cast<size_t>(original.height) * original.width;
    std::vector<float> planar(3 * pixels);
    for (size_t i = 0; i < pixels; ++i)
    {
        for (int c = 0; c < 3; ++c)
        {
            planar[c * pixels + i] = rgb[3 * i + c];
        }
    }
    bool const same = resized.height == original.height && resized.width == original.width;
    std::vector<float> const image = same ? planar : resizeBilinearAntialias(planar.data(), 3, original, resized);
    std::vector<float> out(3 * static_cast<size_t>(padded.height) * padded.width, 0.0F);
    for (int c = 0; c < 3; ++c)
    {
        for (int y = 0; y < resized.height; ++y)
        {
            for (int x = 0; x < resized.width; ++x)
            {
                float const value = image[(static_cast<size_t>(c) * resized.height + y) * resized.width + x];
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

std::vector<float> resizeBilinearAntialias(float const* src, int channels, Size in, Size out)
{
    return separable(src, channels, in, out, antialiasTaps(in.height, out.height), antialiasTaps(in.width, out.width));
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
