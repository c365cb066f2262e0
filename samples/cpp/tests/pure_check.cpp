// A command-line window onto the sample's pure C++ parts, for tests/test_cpp_sample.py to compare
// with basam_deploy's Python (ImageTransform, select_profile). No TensorRT, no CUDA.
//
//   pure_check plan H W MIN MAX MULTIPLE RESOLUTION            -> "resized h w" / "padded Hp Wp"
//   pure_check coords H W MIN MAX MULTIPLE RESOLUTION X Y      -> "model x y" / "image x y"
//   pure_check preprocess IMAGE.ppm MIN MAX MULTIPLE RESOLUTION OUT.f32   (3 x Hp x Wp float32)
//   pure_check postprocess LOWRES.f32 H W MIN MAX MULTIPLE RESOLUTION OUT.f32 OUT.pgm
//   pure_check profiles < lines "profile I NAME MIN OPT MAX" and "query NAME SHAPE [NAME SHAPE]..."
//                                -> the index chosen per query (-1: none)
// RESOLUTION 0 = the image's own long side, clamped. Shapes are written 1x3x256x256.
#include "image_io.h"
#include "profiles.h"
#include "transform.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{

int integer(char const* text)
{
    return std::stoi(text);
}

basam::ImageTransform transformFrom(char** args)
{
    return basam::ImageTransform::plan(
        {integer(args[0]), integer(args[1])}, integer(args[2]), integer(args[3]), integer(args[4]), integer(args[5]));
}

void writeFloats(std::string const& path, std::vector<float> const& values)
{
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<char const*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(float)));
    if (!out)
    {
        throw std::runtime_error("cannot write " + path);
    }
}

std::vector<float> readFloats(std::string const& path, size_t count)
{
    std::vector<float> values(count);
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(count * sizeof(float)));
    if (in.gcount() != static_cast<std::streamsize>(count * sizeof(float)))
    {
        throw std::runtime_error(path + " holds fewer than " + std::to_string(count) + " floats");
    }
    return values;
}

basam::Shape shape(std::string const& text)
{
    basam::Shape dims;
    std::stringstream stream(text);
    std::string part;
    while (std::getline(stream, part, 'x'))
    {
        dims.push_back(std::stoll(part));
    }
    return dims;
}

int profiles()
{
    std::vector<basam::ProfileShapes> all;
    std::string line;
    while (std::getline(std::cin, line))
    {
        std::stringstream words(line);
        std::string kind;
        words >> kind;
        if (kind == "profile")
        {
            size_t index = 0;
            std::string name, low, opt, high;
            words >> index >> name >> low >> opt >> high;
            all.resize(std::max(all.size(), index + 1));
            all[index][name] = {shape(low), shape(opt), shape(high)};
        }
        else if (kind == "query")
        {
            basam::Shapes shapes;
            std::string name, dims;
            while (words >> name >> dims)
            {
                shapes[name] = shape(dims);
            }
            std::cout << basam::selectProfile(all, shapes) << "\n";
        }
    }
    return 0;
}

int run(int argc, char** argv)
{
    std::string const command = argc > 1 ? argv[1] : "";
    if (command == "plan" && argc == 8)
    {
        basam::ImageTransform const t = transformFrom(argv + 2);
        std::printf("resized %d %d\npadded %d %d\n", t.resized.height, t.resized.width, t.padded.height, t.padded.width);
        return 0;
    }
    if (command == "coords" && argc == 10)
    {
        basam::ImageTransform const t = transformFrom(argv + 2);
        double mx = 0, my = 0, ix = 0, iy = 0;
        t.toModelCoords(std::stod(argv[8]), std::stod(argv[9]), mx, my);
        t.toImageCoords(mx, my, ix, iy);
        std::printf("model %.17g %.17g\nimage %.17g %.17g\n", mx, my, ix, iy);
        return 0;
    }
    if (command == "preprocess" && argc == 8)
    {
        basam::Image const image = basam::readPnm(argv[2]);
        basam::ImageTransform const t = basam::ImageTransform::plan({image.height, image.width}, integer(argv[3]),
            integer(argv[4]), integer(argv[5]), integer(argv[6]));
        writeFloats(argv[7], t.modelInput(image.rgb.data()));
        std::printf("padded %d %d\n", t.padded.height, t.padded.width);
        return 0;
    }
    if (command == "postprocess" && argc == 11)
    {
        basam::ImageTransform const t = transformFrom(argv + 3);
        basam::Size const low = t.lowResSize();
        std::vector<float> const logits
            = t.masksToImage(readFloats(argv[2], static_cast<size_t>(low.height) * low.width).data());
        writeFloats(argv[9], logits);
        basam::writePgm(argv[10], t.original.width, t.original.height, basam::threshold(logits));
        return 0;
    }
    if (command == "profiles" && argc == 2)
    {
        return profiles();
    }
    std::cerr << "usage: see the comment at the top of pure_check.cpp\n";
    return 2;
}

} // namespace

int main(int argc, char** argv)
{
    try
    {
        return run(argc, argv);
    }
    catch (std::exception const& error)
    {
        std::cerr << "pure_check: error: " << error.what() << "\n";
        return 2;
    }
}
