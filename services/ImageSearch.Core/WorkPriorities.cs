namespace ImageSearch.Core;

/// <summary>
/// The nice values (<see cref="ThreadNice"/>) of the process's background kinds of work. Everything
/// else, request handling included, keeps the process's own priority, so among the work of one
/// process the order is: requests whose embedding is done (decode, k-NN, re-ranking, the response),
/// then the query model, then ingestion (decode, local features and the model for new images).
/// </summary>
/// <param name="QueryModelNice">Nice value of the threads that run the model for queries (the query queue and ONNX Runtime's threads of the latency session).</param>
/// <param name="IngestionNice">Nice value of the threads that decode and embed images being ingested (and of the throughput session's threads).</param>
public sealed record WorkPriorities(int QueryModelNice, int IngestionNice)
{
    /// <summary>Each kind of work the given number of levels below the process's own priority.</summary>
    public static WorkPriorities Below(int queryModel, int ingestion) => new(ThreadNice.Below(queryModel), ThreadNice.Below(ingestion));
}
