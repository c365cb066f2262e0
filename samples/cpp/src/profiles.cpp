#include "profiles.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <tuple>

namespace basam
{

bool ShapeRange::contains(Shape const& shape) const
{
    if (shape.size() != min.size())
    {
        return false;
    }
    for (size_t i = 0; i < shape.size(); ++i)
    {
        if (shape[i] < min[i] || shape[i] > max[i])
        {
            return false;
        }
    }
    return true;
}

double ShapeRange::extent() const
{
    double product = 1.0;
    for (size_t i = 0; i < min.size(); ++i)
    {
        product *= static_cast<double>(max[i] - min[i] + 1);
    }
    return product;
}

int64_t ShapeRange::distance(Shape const& shape) const
{
    int64_t sum = 0;
    for (size_t i = 0; i < shape.size() && i < opt.size(); ++i)
    {
        sum += shape[i] > opt[i] ? shape[i] - opt[i] : opt[i] - shape[i];
    }
    return sum;
}

int selectProfile(std::vector<ProfileShapes> const& profiles, Shapes const& shapes)
{
    // (extent, distance, index): the smallest wins, as Python's min() over the same tuples.
    std::tuple<double, int64_t, int> best{std::numeric_limits<double>::infinity(), 0, -1};
    for (size_t index = 0; index < profiles.size(); ++index)
    {
        double extent = 1.0;
        int64_t distance = 0;
        bool fits = true;
        for (auto const& [name, shape] : shapes)
        {
            auto const found = profiles[index].find(name);
            if (found == profiles[index].end() || !found->second.contains(shape))
            {
                fits = false;
                break;
            }
            extent *= found->second.extent();
            distance += found->second.distance(shape);
        }
        std::tuple<double, int64_t, int> const candidate{extent, distance, static_cast<int>(index)};
        if (fits && (std::get<2>(best) < 0 || candidate < best))
        {
            best = candidate;
        }
    }
    return std::get<2>(best);
}

std::string shapeText(Shape const& shape)
{
    std::string text;
    for (size_t i = 0; i < shape.size(); ++i)
    {
        text += (i ? "x" : "") + std::to_string(shape[i]);
    }
    return text;
}

std::string describeProfiles(std::vector<ProfileShapes> const& profiles, std::vector<std::string> const& names)
{
    std::string text;
    for (size_t index = 0; index < profiles.size(); ++index)
    {
        text += (index ? "; #" : "#") + std::to_string(index);
        bool first = true;
        for (auto const& name : names)
        {
            auto const found = profiles[index].find(name);
            if (found == profiles[index].end())
            {
                continue;
            }
            ShapeRange const& r = found->second;
            text += (first ? " " : ", ") + name + " ";
            text += r.min == r.max ? shapeText(r.min)
                                   : shapeText(r.min) + ".." + shapeText(r.max) + " (opt " + shapeText(r.opt) + ")";
            first = false;
        }
    }
    return text;
}

SizeSpan sizeSpan(std::vector<ProfileShapes> const& profiles, std::string const& input)
{
    SizeSpan span{std::numeric_limits<int>::max(), 0};
    for (auto const& profile : profiles)
    {
        auto const found = profile.find(input);
        if (found == profile.end() || found->second.min.size() != 4)
        {
            throw std::runtime_error("an optimization profile has no 4-D input '" + input + "'");
        }
        ShapeRange const& r = found->second;
        span.min = std::min(span.min, static_cast<int>(std::max(r.min[2], r.min[3])));
        span.max = std::max(span.max, static_cast<int>(std::min(r.max[2], r.max[3])));
    }
    if (profiles.empty())
    {
        throw std::runtime_error("the engine has no optimization profile: rebuild it");
    }
    return span;
}

} // namespace basam
