// A TensorRT engine with one execution context: its optimization profiles read from the engine,
// the choice of profile per call, input shapes and addresses, output buffers, enqueueV3.
//
// Written against TensorRT 10.9+ and 11.x (NvInferRuntime.h): only calls present, and not
// deprecated, in both lines. Every I/O tensor must be FP32 (basam-export keeps FP32 I/O, also in
// its FP16 exports).
#pragma once

#include "profiles.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace basam
{

// Prints TensorRT's warnings and errors on stderr.
class Logger : public nvinfer1::ILogger
{
public:
    void log(Severity severity, char const* message) noexcept override;
};

// Throws std::runtime_error naming the CUDA call and its error.
void checkCuda(cudaError_t status, char const* what);

// Device memory, freed with the object.
class DeviceBuffer
{
public:
    DeviceBuffer() = default;
    DeviceBuffer(DeviceBuffer const&) = delete;
    DeviceBuffer& operator=(DeviceBuffer const&) = delete;
    DeviceBuffer(DeviceBuffer&& other) noexcept;
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
    ~DeviceBuffer();

    void reserve(size_t bytes); // grows, never shrinks; the contents are not kept
    void* data() const
    {
        return mData;
    }

private:
    void* mData = nullptr;
    size_t mBytes = 0;
};

// A CUDA stream, destroyed with the object.
class CudaStream
{
public:
    CudaStream();
    CudaStream(CudaStream const&) = delete;
    CudaStream& operator=(CudaStream const&) = delete;
    ~CudaStream();

    cudaStream_t get() const
    {
        return mStream;
    }

private:
    cudaStream_t mStream = nullptr;
};

// A tensor on the device: address and shape (FP32).
struct DeviceTensor
{
    void* data = nullptr;
    Shape shape;
};

class Engine
{
public:
    // Deserializes `path` with `runtime`, reads its I/O names and every profile's input ranges.
    Engine(nvinfer1::IRuntime& runtime, std::string const& path);

    std::string const& name() const
    {
        return mName;
    }
    std::vector<std::string> const& inputs() const
    {
        return mInputs;
    }
    std::vector<ProfileShapes> const& profiles() const
    {
        return mProfiles;
    }

    // The profile for these input shapes (see selectProfile); throws naming every profile's range.
    int chooseProfile(Shapes const& shapes) const;

    // Switches to the chosen profile, sets every input's shape and address, sizes the outputs and
    // enqueues one run on `stream`. Returns the profile index. Outputs are valid once the stream
    // is synchronized, and until the next run.
    int enqueue(std::map<std::string, DeviceTensor> const& inputs, cudaStream_t stream);

    DeviceTensor output(std::string const& name) const;

private:
    std::string mName;
    std::unique_ptr<nvinfer1::ICudaEngine> mEngine;
    std::unique_ptr<nvinfer1::IExecutionContext> mContext;
    std::vector<std::string> mInputs;
    std::vector<std::string> mOutputs;
    std::vector<ProfileShapes> mProfiles;
    std::map<std::string, DeviceBuffer> mOutputBuffers;
    std::map<std::string, Shape> mOutputShapes;
    int mActiveProfile = -1;
};

} // namespace basam
