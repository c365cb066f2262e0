// Binary Netpbm images: read P6 (RGB) and P5 (grey, as RGB), write P5 and P6.
//
// The sample reads and writes no other format so that it depends on nothing but the C++ library;
// convert with any image tool (ImageMagick: `convert photo.jpg photo.ppm`, or Pillow).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace basam
{

struct Image
{
    int width = 0;
    int height = 0;
    std::vector<uint8_t> rgb; // height x width x 3, row major
};

// Throws std::runtime_error naming the file and the problem.
Image readPnm(std::string const& path);
void writePgm(std::string const& path, int width, int height, std::vector<uint8_t> const& grey);
void writePpm(std::string const& path, Image const& image);

} // namespace basam
