namespace ImageSearch.Qdrant.Tests;

/// <summary>
/// The validator that <see cref="QdrantApiDouble"/> relies on must accept what Qdrant documents and
/// refuse what Qdrant would refuse; otherwise the double's checks prove nothing.
/// </summary>
public sealed class OpenApiValidatorTests
{
    private static readonly OpenApiValidator Spec = OpenApiValidator.Qdrant;

    [Fact]
    public void The_excerpt_names_its_source()
    {
        Assert.Equal("000afd44829b372d77aa18e59db3f18a7fd040ac", Spec.SourceCommit);
    }

    [Theory]
    // Request bodies from the examples in the spec's own description (info.description) and the
    // API reference (https://api.qdrant.tech/api-reference).
    [InlineData("CreateCollection", """{"vectors":{"size":4,"distance":"Dot"}}""")]
    [InlineData("PointInsertOperations", """{"points":[{"id":1,"vector":[0.05,0.61,0.76,0.74],"payload":{"city":"Berlin"}},{"id":2,"vector":[0.19,0.81,0.75,0.11],"payload":{"city":["Berlin","London"]}},{"id":6,"vector":[0.35,0.08,0.11,0.44]}]}""")]
    [InlineData("SearchRequest", """{"filter":{"should":[{"key":"city","match":{"value":"London"}}]},"vector":[0.2,0.1,0.9,0.7],"limit":3}""")]
    [InlineData("PointsSelector", """{"points":[0,3,100]}""")]
    [InlineData("PointRequest", """{"ids":[0,3,100],"with_payload":true}""")]
    [InlineData("CountRequest", """{"filter":{"must":[{"key":"color","match":{"value":"red"}}]},"exact":true}""")]
    [InlineData("CreateFieldIndex", """{"field_name":"name_of_the_field_to_index","field_schema":"keyword"}""")]
    public void Documented_examples_are_accepted(string schema, string json)
    {
        Assert.Empty(Spec.ValidateSchema(json, schema));
    }

    [Theory]
    [InlineData("CreateCollection", """{"vectors":{"size":4,"distanse":"Cosine"}}""", "matches no anyOf")]
    [InlineData("CreateCollection", """{"vectors":{"size":0,"distance":"Cosine"}}""", "below the minimum")]
    [InlineData("CreateCollection", """{"vectors":{"size":4,"distance":"cosine"}}""", "is not one of")]
    [InlineData("CreateCollection", """{"vectors":{"size":4,"distance":"Cosine"},"hnsw":{"m":16}}""", "$.hnsw: property is not defined")]
    [InlineData("PointInsertOperations", """{"points":[{"id":"not-a-uuid","vector":[1]}]}""", "matches no anyOf")]
    [InlineData("PointInsertOperations", """{"points":[{"id":1.5,"vector":[1]}]}""", "matches no anyOf")]
    [InlineData("SearchRequest", """{"vector":[1,2],"top":3}""", "required property 'limit' is missing")]
    [InlineData("SearchRequest", """{"vector":[1,2],"limit":3,"with_vectors":true}""", "$.with_vectors: property is not defined")]
    [InlineData("SearchRequest", """{"vector":[1,2],"limit":3,"filter":{"must_not":[{"has_id":["x"]}]}}""", "matches no anyOf")]
    [InlineData("SearchRequest", """{"vector":[1,2],"limit":3,"filter":{"must":[],"also":[]}}""", "matches no anyOf")]
    [InlineData("CountRequest", """{"exact":"yes"}""", "expected boolean")]
    [InlineData("UpdateResult", """{"operation_id":1,"status":"done"}""", "is not one of")]
    public void What_qdrant_would_refuse_is_refused(string schema, string json, string expected)
    {
        var errors = Spec.ValidateSchema(json, schema);

        Assert.Contains(errors, e => e.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Operations_are_found_by_method_and_path_template()
    {
        Assert.Equal("upsert_points", Spec.FindOperation("PUT", "/collections/photos/points")!.OperationId);
        Assert.Equal("get_points", Spec.FindOperation("POST", "/collections/photos/points")!.OperationId);
        Assert.Equal("search_points", Spec.FindOperation("POST", "/collections/photos/points/search")!.OperationId);
        Assert.Null(Spec.FindOperation("POST", "/collections/photos/points/query"));
        Assert.Null(Spec.FindOperation("PATCH", "/collections/photos"));
    }

    [Fact]
    public void Query_parameters_are_checked_against_the_operation()
    {
        var upsert = Spec.FindOperation("PUT", "/collections/c/points")!;
        const string body = """{"points":[]}""";

        Assert.Empty(Spec.ValidateRequest(upsert, new Dictionary<string, string> { ["wait"] = "true" }, "application/json", body));
        Assert.Contains("does not match its schema", Assert.Single(Spec.ValidateRequest(upsert, new Dictionary<string, string> { ["wait"] = "yes" }, "application/json", body)));
        Assert.Contains("is not defined", Assert.Single(Spec.ValidateRequest(upsert, new Dictionary<string, string> { ["waitt"] = "true" }, "application/json", body)));
        Assert.Contains("Content-Type", Assert.Single(Spec.ValidateRequest(upsert, new Dictionary<string, string>(), "text/plain", body)));
    }

    [Theory]
    // Answers as documented: the spec's description and error bodies seen from Qdrant (qdrant/qdrant issue #2842).
    [InlineData("PUT", "/collections/test_collection", 200, """{"result":true,"status":"ok","time":0.031095451}""")]
    [InlineData("PUT", "/collections/test_collection/points", 200, """{"result":{"operation_id":0,"status":"completed"},"status":"ok","time":0.000206061}""")]
    [InlineData("POST", "/collections/test_collection/points/search", 200, """{"result":[{"id":4,"score":1.362,"payload":null,"version":0}],"status":"ok","time":0.000055785}""")]
    [InlineData("GET", "/collections/750k_noise_collection", 404, """{"status":{"error":"Not found: Collection `750k_noise_collection` doesn't exist!"},"time":8.929e-6}""")]
    public void Documented_answers_are_accepted(string method, string path, int status, string body)
    {
        Assert.Empty(Spec.ValidateResponse(Spec.FindOperation(method, path)!, status, "application/json", body));
    }

    [Fact]
    public void An_answer_missing_a_required_field_is_refused()
    {
        var search = Spec.FindOperation("POST", "/collections/c/points/search")!;

        var errors = Spec.ValidateResponse(search, 200, "application/json", """{"result":[{"id":4,"score":1.3}],"status":"ok","time":0.1}""");

        Assert.Contains(errors, e => e.Contains("required property 'version' is missing", StringComparison.Ordinal));
    }
}
