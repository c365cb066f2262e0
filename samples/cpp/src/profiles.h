// Optimization profiles as plain data, and the choice of one for concrete input shapes.
//
// A C++ port of basam_deploy.tensorrt.profiles.select_profile: among the profiles that contain every
// input shape, the narrowest (fewest shapes served), then the one whose opt is nearest, then the
// lowest index. No TensorRT: the engine part fills these from ICudaEngine::getProfileShape.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace basam
{

using Shape = std::vector<int64_t>;

// One input's min, opt and max shapes in one optimization profile.
struct ShapeRange
{
    Shape min;
    Shape opt;
    Shape max;

    bool contains(Shape const& shape) const;
    double extent() const; // shapes served: product of (max - min + 1); a double, it can be huge
    int64_t distance(Shape const& shape) const;
};

using ProfileShapes = std::map<std::string, ShapeRange>; // input name -> range
using Shapes = std::map<std::string, Shape>;             // input name -> concrete shape

// Index of the profile serving `shapes`, or -1 when none does.
int selectProfile(std::vector<ProfileShapes> const& profiles, Shapes const& shapes);

// "#0 image 1x3x256x256..4x3x768x768 (opt 1x3x512x512); #1 ..." for error messages.
std::string describeProfiles(std::vector<ProfileShapes> const& profiles, std::vector<std::string> const& names);

std::string shapeText(Shape const& shape);

// The long sides an encoder accepts for both H and W in at least one profile of its `input`
// (N 3 H W): min = smallest max(min H, min W), max = largest min(max H, max W), as
// basam_deploy.Predictor.from_engines computes them.
struct SizeSpan
{
    int min = 0;
    int max = 0;
};
SizeSpan sizeSpan(std::vector<ProfileShapes> const& profiles, std::string const& input = "image");

} // namespace basam
