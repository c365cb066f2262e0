#include "image_io.h"

#include <cctype>
#include <fstream>
#include <stdexcept>

namespace basam
{

namespace
{

// The next header token, skipping white space and '#' comments (Netpbm's header grammar).
std::string token(std::istream& in)
{
    std::string text;
    int c = in.get();
    while (in && (std::isspace(c) || c == '#'))
    {
        if (c == '#')
        {
            while (in && c != '\n')
            {
                c = in.get();
            }
        }
        c = in.get();
    }
    while (in && !std::isspace(c) && c != '#')
    {
        text.push_back(static_cast<char>(c));
        c = in.get();
    }
    return text; // the single white-space character after the last header token is consumed here
}

int number(std::istream& in, std::string const& path, char const* what)
{
    std::string const text = token(in);
    try
    {
        size_t used = 0;
        int const value = std::stoi(text, &used);
        if (used == text.size() && value > 0)
        {
            return value;
        }
    }
    catch (std::exception const&)
    {
    }
    throw std::runtime_error(path + ": bad " + what + " '" + text + "' in the Netpbm header");
}

} // namespace

Image readPnm(std::string const& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
    {
        throw std::runtime_error("cannot open image " + path);
    }
    std::string const magic = token(in);
    if (magic != "P6" && magic != "P5")
    {
        throw std::runtime_error(path + " is not a binary PPM (P6) or PGM (P5) image: convert it, e.g. with "
                                        "`convert IMAGE " + path + "`");
    }
    Image image;
    image.width = number(in, path, "width");
    image.height = number(in, path, "height");
    if (number(in, path, "maxval") != 255)
    {
        throw std::runtime_error(path + ": only 8-bit images (maxval 255) are read");
    }
    int const channels = magic == "P6" ? 3 : 1;
    std::vector<uint8_t> data(static_cast<size_t>(image.width) * image.height * channels);
    in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size()));
    if (in.gcount() != static_cast<std::streamsize>(data.size()))
    {
        throw std::runtime_error(path + " is truncated: expected " + std::to_string(data.size()) + " pixel bytes");
    }
    if (channels == 3)
    {
        image.rgb = std::move(data);
    }
    else
    {
        image.rgb.resize(data.size() * 3);
        for (size_t i = 0; i < data.size(); ++i)
        {
            image.rgb[3 * i] = image.rgb[3 * i + 1] = image.rgb[3 * i + 2] = data[i];
        }
    }
    return image;
}

namespace
{

void writeNetpbm(std::string const& path, char const* magic, int width, int height, std::vector<uint8_t> const& data)
{
    std::ofstream out(path, std::ios::binary);
    out << magic << "\n" << width << " " << height << "\n255\n";
    out.write(reinterpret_cast<char const*>(data.data()), static_cast<std::streamsize>(data.size()));
    if (!out)
    {
        throw std::runtime_error("cannot write " + path);
    }
}

} // namespace

void writePgm(std::string const& path, int width, int height, std::vector<uint8_t> const& grey)
{
    if (grey.size() != static_cast<size_t>(width) * height)
    {
        throw std::invalid_argument("writePgm: " + std::to_string(grey.size()) + " bytes for a " + std::to_string(width)
            + "x" + std::to_string(height) + " image");
    }
    writeNetpbm(path, "P5", width, height, grey);
}

void writePpm(std::string const& path, Image const& image)
{
    writeNetpbm(path, "P6", image.width, image.height, image.rgb);
}

} // namespace basam
