// One image's way into BA-SAM (resize, normalize, pad) and the masks' and prompts' way back.
//
// A C++ port of basam_deploy.pipeline.transform.ImageTransform with its defaults (segment-anything's
// SamPredictor conventions), number for number: the same resize policy, coordinates scaled by
// resized / original, PIL's bilinear resize of the uint8 image and PyTorch's plain bilinear resize
// (align_corners=False) for the masks. No TensorRT, no CUDA.
#pragma once

#include <cstdint>
#include <vector>

namespace basam
{

struct Size
{
    int height = 0;
    int width = 0;
};

// segment-anything's pixel statistics (Sam.pixel_mean / pixel_std), RGB, 0-255.
constexpr float kPixelMean[3] = {123.675F, 116.28F, 103.53F};
constexpr float kPixelStd[3] = {58.395F, 57.12F, 57.375F};

// The size an image is resized to, aspect ratio kept (before padding). The long side becomes
// `resolution` when it is > 0 (it must lie in [minSize, maxSize]), else the image's own long side
// clamped into [minSize, maxSize]. Throws std::invalid_argument for a resolution outside the range.
Size workingSize(Size original, int minSize, int maxSize, int resolution = 0);

// original (H, W) -> resized (h, w), aspect kept -> padded (Hp, Wp), multiples of the patch and at
// least minSize; with a resolution, its square (as SamPredictor). The embedding grid is
// Hp/16 x Wp/16, the decoder's low-res masks Hp/4 x Wp/4.
struct ImageTransform
{
    Size original;
    Size resized;
    Size padded;

    static ImageTransform plan(Size original, int minSize, int maxSize, int multipleOf, int resolution = 0);

    double scaleX() const; // resized / original, per axis
    double scaleY() const;
    Size lowResSize() const; // Hp/4 x Wp/4

    // Pixel coordinates, x then y: model = image * s per axis (ResizeLongestSide.apply_coords).
    void toModelCoords(double x, double y, double& modelX, double& modelY) const;
    void toImageCoords(double modelX, double modelY, double& x, double& y) const;

    // H W 3 uint8 RGB -> 3 Hp Wp float32: resized (PIL's bilinear on uint8), normalized, and
    // zero-padded at the bottom and right (zero is the mean colour after normalization).
    std::vector<float> modelInput(uint8_t const* rgb) const;

    // One Hp/4 x Wp/4 mask of logits -> H x W logits at the original size: upscale to the padded
    // input, crop the padding, resize to the original (segment-anything's postprocess_masks).
    std::vector<float> masksToImage(float const* lowRes) const;
};

// Interleaved in x 3 uint8 -> out x 3 uint8, equal to PIL's Image.resize(..., Image.BILINEAR): a
// triangle filter widened by the scale when shrinking, fixed-point, each pass rounded to uint8.
std::vector<uint8_t> resizeBilinearPil(uint8_t const* rgb, Size in, Size out);

// Planar C x in -> C x out. PyTorch's F.interpolate(mode="bilinear", align_corners=False).
std::vector<float> resizeBilinear(float const* src, int channels, Size in, Size out);

// logits > threshold -> 255, else 0 (segment-anything's mask_threshold is 0).
std::vector<uint8_t> threshold(std::vector<float> const& logits, float level = 0.0F);

} // namespace basam
