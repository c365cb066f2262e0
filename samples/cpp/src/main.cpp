// basam_segment: segment one image with BA-SAM TensorRT engines built by `basam-trt build`.
//
//   basam_segment --engines DIR --image photo.ppm --point 320,240 --output mask.pgm
//
// The same pipeline as basam_deploy.Predictor (its SamPredictor defaults): resize (aspect kept,
// PIL's bilinear) into the engines' size range, normalize, pad to multiples of 16 (to the square of
// --long-side); the encoder once; prompts mapped to the padded input; the
// decoder; the low-res mask upscaled to the image and thresholded at 0.
#include "image_io.h"
#include "profiles.h"
#include "transform.h"
#include "trt_engine.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{

constexpr int kPatch = 16;

struct Options
{
    std::string encoder;
    std::string decoder;
    std::string image;
    std::string output;
    std::vector<std::vector<double>> points; // x, y, label
    std::vector<double> box;                 // x0, y0, x1, y1
    std::vector<std::string> pluginLibraries;
    int longSide = 0;
    bool singleMask = false;
};

char const* kUsage
    = "usage: basam_segment (--engines DIR | --encoder ENGINE --decoder ENGINE) --image IMAGE.ppm\n"
      "                     (--point X,Y[,LABEL] ... | --box X0,Y0,X1,Y1) --output MASK.pgm\n"
      "                     [--long-side N] [--single-mask] [--plugin-library LIB.so ...]\n"
      "  --engines DIR      DIR/encoder.engine and DIR/decoder.engine (basam-trt build)\n"
      "  --point X,Y,LABEL  original-image pixels; label 1 foreground (default), 0 background\n"
      "  --box X0,Y0,X1,Y1  original-image pixels\n"
      "  --long-side N      resize the long side to N (default: the image's own, clamped into the\n"
      "                     engines' range)\n"
      "  --single-mask      the decoder's single-mask output (default: the best of its three)\n"
      "  --plugin-library   a TensorRT plugin library the engines need (not for AOT plugins)\n";

std::vector<double> numbers(std::string const& text, char const* flag, size_t low, size_t high)
{
    std::vector<double> values;
    std::stringstream stream(text);
    std::string part;
    while (std::getline(stream, part, ','))
    {
        try
        {
            size_t used = 0;
            values.push_back(std::stod(part, &used));
            if (used != part.size())
            {
                values.clear();
                break;
            }
        }
        catch (std::exception const&)
        {
            values.clear();
            break;
        }
    }
    if (values.size() < low || values.size() > high)
    {
        throw std::invalid_argument(std::string(flag) + " " + text + ": expected " + std::to_string(low)
            + (low == high ? "" : " or " + std::to_string(high)) + " comma-separated numbers");
    }
    return values;
}

Options parse(int argc, char** argv)
{
    Options options;
    for (int i = 1; i < argc; ++i)
    {
        std::string const flag = argv[i];
        if (flag == "--help" || flag == "-h")
        {
            std::cout << kUsage;
            std::exit(0);
        }
        if (flag == "--single-mask")
        {
            options.singleMask = true;
            continue;
        }
        if (i + 1 >= argc)
        {
            throw std::invalid_argument(flag + " needs a value (see --help)");
        }
        std::string const value = argv[++i];
        if (flag == "--engines")
        {
            options.encoder = value + "/encoder.engine";
            options.decoder = value + "/decoder.engine";
        }
        else if (flag == "--encoder")
            options.encoder = value;
        else if (flag == "--decoder")
            options.decoder = value;
        else if (flag == "--image")
            options.image = value;
        else if (flag == "--output")
            options.output = value;
        else if (flag == "--plugin-library")
            options.pluginLibraries.push_back(value);
        else if (flag == "--point")
        {
            std::vector<double> point = numbers(value, "--point", 2, 3);
            if (point.size() == 2)
            {
                point.push_back(1.0);
            }
            if (point[2] != 0.0 && point[2] != 1.0)
            {
                throw std::invalid_argument("--point " + value + ": the label is 1 (foreground) or 0 (background)");
            }
            options.points.push_back(point);
        }
        else if (flag == "--box")
        {
            options.box = numbers(value, "--box", 4, 4);
            if (options.box[2] < options.box[0] || options.box[3] < options.box[1])
            {
                throw std::invalid_argument("--box " + value + ": give x0,y0,x1,y1 with x0 <= x1 and y0 <= y1");
            }
        }
        else if (flag == "--long-side")
            options.longSide = static_cast<int>(numbers(value, "--long-side", 1, 1)[0]);
        else
            throw std::invalid_argument("unknown option " + flag + " (see --help)");
    }
    if (options.encoder.empty() || options.decoder.empty() || options.image.empty() || options.output.empty())
    {
        throw std::invalid_argument("give --engines (or --encoder and --decoder), --image and --output (see --help)");
    }
    if (options.points.empty() && options.box.empty())
    {
        throw std::invalid_argument("give at least one --point or a --box");
    }
    return options;
}

// Refuse prompts outside the image: almost always x and y swapped, and a silently wrong mask is
// worse than none (as basam_deploy.Predictor does).
void checkInside(double x, double y, basam::Size size, char const* what)
{
    if (!(x >= 0 && x <= size.width && y >= 0 && y <= size.height))
    {
        throw std::invalid_argument(std::string(what) + " (" + std::to_string(x) + ", " + std::to_string(y)
            + ") is outside the " + std::to_string(size.width) + "x" + std::to_string(size.height)
            + " (W x H) image: give x, y in original-image pixels");
    }
}

int run(Options const& options)
{
    using basam::DeviceTensor;
    using basam::checkCuda;

    basam::Image const image = basam::readPnm(options.image);
    basam::Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    if (!runtime)
    {
        throw std::runtime_error("TensorRT could not create a runtime (is libnvinfer installed?)");
    }
    int const linked = getInferLibVersion();
    if (linked / 10000 != NV_TENSORRT_MAJOR)
    {
        std::cerr << "warning: built with TensorRT " << NV_TENSORRT_MAJOR << "." << NV_TENSORRT_MINOR
                  << " headers, running TensorRT " << linked / 10000 << "." << linked / 100 % 100 << "\n";
    }
    for (auto const& library : options.pluginLibraries)
    {
        if (!runtime->getPluginRegistry().loadLibrary(library.c_str()))
        {
            throw std::runtime_error("TensorRT could not load the plugin library " + library);
        }
    }
    basam::Engine encoder(*runtime, options.encoder);
    basam::Engine decoder(*runtime, options.decoder);

    // The long sides every H and W the encoder's profiles accept, as Predictor.from_engines.
    basam::SizeSpan const span = basam::sizeSpan(encoder.profiles());
    basam::ImageTransform const transform
        = basam::ImageTransform::plan({image.height, image.width}, span.min, span.max, kPatch, options.longSide);

    // Prompts: points, then box corners (labels 2, 3); without a box, segment-anything's padding
    // point (0, 0) with label -1.
    std::vector<float> coords;
    std::vector<float> labels;
    auto add = [&](double x, double y, float label) {
        double mx = 0.0;
        double my = 0.0;
        transform.toModelCoords(x, y, mx, my);
        coords.push_back(static_cast<float>(mx));
        coords.push_back(static_cast<float>(my));
        labels.push_back(label);
    };
    for (auto const& p : options.points)
    {
        checkInside(p[0], p[1], transform.original, "--point");
        add(p[0], p[1], static_cast<float>(p[2]));
    }
    if (!options.box.empty())
    {
        checkInside(options.box[0], options.box[1], transform.original, "--box");
        checkInside(options.box[2], options.box[3], transform.original, "--box");
        add(options.box[0], options.box[1], 2.0F);
        add(options.box[2], options.box[3], 3.0F);
    }
    else
    {
        coords.insert(coords.end(), {0.0F, 0.0F});
        labels.push_back(-1.0F);
    }
    auto const points = static_cast<int64_t>(labels.size());
    basam::Size const lowRes = transform.lowResSize();

    basam::CudaStream const cudaStream;
    cudaStream_t const stream = cudaStream.get();
    std::vector<float> const input = transform.modelInput(image.rgb.data());
    std::vector<float> const noMask(static_cast<size_t>(lowRes.height) * lowRes.width, 0.0F);
    float const hasMask = 0.0F;
    basam::DeviceBuffer imageBuffer;
    basam::DeviceBuffer coordsBuffer;
    basam::DeviceBuffer labelsBuffer;
    basam::DeviceBuffer maskBuffer;
    basam::DeviceBuffer hasMaskBuffer;
    auto upload = [&](basam::DeviceBuffer& buffer, void const* data, size_t bytes) {
        buffer.reserve(bytes);
        checkCuda(cudaMemcpyAsync(buffer.data(), data, bytes, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
    };
    upload(imageBuffer, input.data(), input.size() * sizeof(float));
    upload(coordsBuffer, coords.data(), coords.size() * sizeof(float));
    upload(labelsBuffer, labels.data(), labels.size() * sizeof(float));
    upload(maskBuffer, noMask.data(), noMask.size() * sizeof(float));
    upload(hasMaskBuffer, &hasMask, sizeof(float));

    int const encoderProfile = encoder.enqueue(
        {{"image", {imageBuffer.data(), {1, 3, transform.padded.height, transform.padded.width}}}}, stream);
    // The embeddings stay on the device: the decoder reads the encoder's output buffer directly.
    DeviceTensor const embeddings = encoder.output("image_embeddings");
    int const decoderProfile = decoder.enqueue(
        {
            {"image_embeddings", embeddings},
            {"point_coords", {coordsBuffer.data(), {1, points, 2}}},
            {"point_labels", {labelsBuffer.data(), {1, points}}},
            {"mask_input", {maskBuffer.data(), {1, 1, lowRes.height, lowRes.width}}},
            {"has_mask_input", {hasMaskBuffer.data(), {1}}},
        },
        stream);
    DeviceTensor const masks = decoder.output("low_res_masks");
    DeviceTensor const scores = decoder.output("iou_predictions");
    if (masks.shape.size() != 4 || masks.shape[2] != lowRes.height || masks.shape[3] != lowRes.width)
    {
        throw std::runtime_error("the decoder's low_res_masks are " + basam::shapeText(masks.shape) + ", expected 1xMx"
            + std::to_string(lowRes.height) + "x" + std::to_string(lowRes.width));
    }
    std::vector<float> lowResMasks(static_cast<size_t>(masks.shape[1]) * lowRes.height * lowRes.width);
    std::vector<float> iou(static_cast<size_t>(scores.shape.back()));
    checkCuda(cudaMemcpyAsync(lowResMasks.data(), masks.data, lowResMasks.size() * sizeof(float),
                  cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync");
    checkCuda(cudaMemcpyAsync(iou.data(), scores.data, iou.size() * sizeof(float), cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync");
    checkCuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");

    // Mask 0 is the single-mask output, 1-3 the multimask ones (segment-anything's convention).
    size_t chosen = 0;
    if (!options.singleMask && iou.size() > 1)
    {
        chosen = static_cast<size_t>(std::max_element(iou.begin() + 1, iou.end()) - iou.begin());
    }
    std::vector<float> const logits
        = transform.masksToImage(lowResMasks.data() + chosen * static_cast<size_t>(lowRes.height) * lowRes.width);
    std::vector<uint8_t> const mask = basam::threshold(logits);
    basam::writePgm(options.output, image.width, image.height, mask);

    size_t const area = static_cast<size_t>(std::count(mask.begin(), mask.end(), uint8_t{255}));
    std::printf("%s: %dx%d -> %dx%d padded to %dx%d; encoder profile #%d, decoder profile #%d; mask %zu (iou %.3f), "
                "%zu pixels -> %s\n",
        options.image.c_str(), image.height, image.width, transform.resized.height, transform.resized.width,
        transform.padded.height, transform.padded.width, encoderProfile, decoderProfile, chosen,
        static_cast<double>(iou[chosen]), area, options.output.c_str());
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    try
    {
        return run(parse(argc, argv));
    }
    catch (std::exception const& error)
    {
        std::cerr << "basam_segment: error: " << error.what() << "\n";
        return 2;
    }
}
