#include "trt_engine.h"

#include <fstream>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <utility>

namespace basam
{

void Logger::log(Severity severity, char const* message) noexcept
{
    if (severity <= Severity::kWARNING)
    {
        std::cerr << "[TensorRT] " << message << "\n";
    }
}

void checkCuda(cudaError_t status, char const* what)
{
    if (status != cudaSuccess)
    {
        throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(status));
    }
}

CudaStream::CudaStream()
{
    checkCuda(cudaStreamCreate(&mStream), "cudaStreamCreate");
}

CudaStream::~CudaStream()
{
    cudaStreamDestroy(mStream);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : mData(std::exchange(other.mData, nullptr))
    , mBytes(std::exchange(other.mBytes, 0))
{
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept
{
    std::swap(mData, other.mData);
    std::swap(mBytes, other.mBytes);
    return *this;
}

DeviceBuffer::~DeviceBuffer()
{
    cudaFree(mData);
}

void DeviceBuffer::reserve(size_t bytes)
{
    if (bytes <= mBytes)
    {
        return;
    }
    cudaFree(mData);
    mData = nullptr;
    mBytes = 0;
    checkCuda(cudaMalloc(&mData, bytes), "cudaMalloc");
    mBytes = bytes;
}

namespace
{

Shape toShape(nvinfer1::Dims const& dims)
{
    return Shape(dims.d, dims.d + dims.nbDims);
}

nvinfer1::Dims toDims(Shape const& shape)
{
    nvinfer1::Dims dims{};
    if (shape.size() > static_cast<size_t>(nvinfer1::Dims::MAX_DIMS))
    {
        throw std::invalid_argument("shape " + shapeText(shape) + " has too many dimensions for TensorRT");
    }
    dims.nbDims = static_cast<int32_t>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i)
    {
        dims.d[i] = shape[i];
    }
    return dims;
}

size_t elements(Shape const& shape)
{
    size_t count = 1;
    for (int64_t d : shape)
    {
        count *= static_cast<size_t>(d);
    }
    return count;
}

std::vector<char> readFile(std::string const& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
    {
        throw std::runtime_error("cannot open engine " + path + " (build it with basam-trt build)");
    }
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

} // namespace

Engine::Engine(nvinfer1::IRuntime& runtime, std::string const& path)
    : mName(path)
{
    std::vector<char> const blob = readFile(path);
    mEngine.reset(runtime.deserializeCudaEngine(blob.data(), blob.size()));
    if (!mEngine)
    {
        throw std::runtime_error("TensorRT could not load " + path
            + " (its message above says why; engines are tied to one TensorRT version and GPU): rebuild it");
    }
    for (int32_t i = 0; i < mEngine->getNbIOTensors(); ++i)
    {
        std::string const tensor = mEngine->getIOTensorName(i);
        if (mEngine->getTensorDataType(tensor.c_str()) != nvinfer1::DataType::kFLOAT)
        {
            throw std::runtime_error(path + ": tensor " + tensor + " is not FP32, which this sample feeds");
        }
        bool const input = mEngine->getTensorIOMode(tensor.c_str()) == nvinfer1::TensorIOMode::kINPUT;
        if (input && mEngine->isShapeInferenceIO(tensor.c_str()))
        {
            throw std::runtime_error(path + ": input " + tensor + " is a shape tensor, which this sample refuses");
        }
        (input ? mInputs : mOutputs).push_back(tensor);
    }
    for (int32_t p = 0; p < mEngine->getNbOptimizationProfiles(); ++p)
    {
        ProfileShapes ranges;
        for (auto const& tensor : mInputs)
        {
            char const* n = tensor.c_str();
            ranges[tensor] = {toShape(mEngine->getProfileShape(n, p, nvinfer1::OptProfileSelector::kMIN)),
                toShape(mEngine->getProfileShape(n, p, nvinfer1::OptProfileSelector::kOPT)),
                toShape(mEngine->getProfileShape(n, p, nvinfer1::OptProfileSelector::kMAX))};
        }
        mProfiles.push_back(std::move(ranges));
    }
    mContext.reset(mEngine->createExecutionContext());
    if (!mContext)
    {
        throw std::runtime_error(path + ": TensorRT could not create an execution context (GPU memory?)");
    }
}

int Engine::chooseProfile(Shapes const& shapes) const
{
    int const index = selectProfile(mProfiles, shapes);
    if (index < 0)
    {
        std::string given;
        for (auto const& [tensor, shape] : shapes)
        {
            given += (given.empty() ? "" : ", ") + tensor + " " + shapeText(shape);
        }
        throw std::runtime_error("no optimization profile of " + mName + " serves " + given + "; its profiles: "
            + describeProfiles(mProfiles, mInputs)
            + ": choose another --long-side, or build the engine with a --profile that contains it");
    }
    return index;
}

int Engine::enqueue(std::map<std::string, DeviceTensor> const& inputs, cudaStream_t stream)
{
    Shapes shapes;
    for (auto const& tensor : mInputs)
    {
        auto const found = inputs.find(tensor);
        if (found == inputs.end())
        {
            throw std::invalid_argument(mName + ": input " + tensor + " is missing");
        }
        shapes[tensor] = found->second.shape;
    }
    int const profile = chooseProfile(shapes);
    if (profile != mActiveProfile)
    {
        // Asynchronous on `stream`: the switch is ordered before the run enqueued below.
        if (!mContext->setOptimizationProfileAsync(profile, stream))
        {
            throw std::runtime_error(mName + ": TensorRT refused optimization profile " + std::to_string(profile));
        }
        mActiveProfile = profile;
    }
    for (auto const& tensor : mInputs)
    {
        DeviceTensor const& value = inputs.at(tensor);
        if (!mContext->setInputShape(tensor.c_str(), toDims(value.shape))
            || !mContext->setTensorAddress(tensor.c_str(), value.data))
        {
            throw std::runtime_error(mName + ": TensorRT refused " + tensor + " " + shapeText(value.shape));
        }
    }
    for (auto const& tensor : mOutputs)
    {
        // Known once every input shape is set.
        Shape const shape = toShape(mContext->getTensorShape(tensor.c_str()));
        for (int64_t d : shape)
        {
            if (d < 0)
            {
                throw std::runtime_error(mName + ": output " + tensor + " has no shape for these inputs");
            }
        }
        DeviceBuffer& buffer = mOutputBuffers[tensor];
        buffer.reserve(elements(shape) * sizeof(float));
        mOutputShapes[tensor] = shape;
        if (!mContext->setTensorAddress(tensor.c_str(), buffer.data()))
        {
            throw std::runtime_error(mName + ": TensorRT refused the address of output " + tensor);
        }
    }
    if (!mContext->enqueueV3(stream))
    {
        throw std::runtime_error(mName + ": enqueueV3 failed (TensorRT's message above says why)");
    }
    return profile;
}

DeviceTensor Engine::output(std::string const& name) const
{
    auto const found = mOutputShapes.find(name);
    if (found == mOutputShapes.end())
    {
        throw std::invalid_argument(mName + ": no output " + name + " (run the engine first)");
    }
    return {mOutputBuffers.at(name).data(), found->second};
}

} // namespace basam
